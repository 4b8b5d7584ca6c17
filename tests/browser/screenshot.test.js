// A short conversation, then a screenshot of the page for the README (docs/screenshot.png).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

const SCREENSHOT = path.join(h.ROOT, 'docs', 'screenshot.png');

test('screenshot of the page after a short conversation', async (t) => {
  const server = await new h.HubbubServer().start();
  const browser = await h.launchBrowser();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const ada = await h.openPage(browser, server.url, { viewport: { width: 1100, height: 700 } });
  const linus = await h.openPage(browser, server.url);
  await h.join(ada, 'ada');
  await h.join(linus, 'linus');

  await h.say(linus, 'Morning! Is the new cluster up?');
  await h.waitForMessage(ada, 'linus', 'Morning! Is the new cluster up?');
  await h.say(ada, 'Yes, three replicas behind the ingress, Redis in between.');
  await h.waitForMessage(linus, 'ada', 'Yes, three replicas behind the ingress, Redis in between.');
  await h.say(linus, 'Nice. Reconnects were smooth during the rollout.');
  await h.waitForMessage(ada, 'linus', 'Nice. Reconnects were smooth during the rollout.');

  const question = 'How many people can one replica hold?';
  await linus.getByLabel('Your question (you may ask one)').fill(question);
  await linus.getByLabel('Your question (you may ask one)').press('Enter');
  const answerBox = ada.getByLabel('Your answer to: ' + question, { exact: true });
  await answerBox.waitFor();
  await answerBox.fill('Tens of thousands: see docs/performance.md');
  await answerBox.press('Enter');
  await ada.waitForFunction(() => document.querySelectorAll('.answer').length === 1);
  await ada.evaluate(() => document.activeElement.blur());

  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await ada.screenshot({ path: SCREENSHOT });
  const png = fs.readFileSync(SCREENSHOT);
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  assert.ok(png.length > 10000, 'a real picture, not an empty page');
  assert.deepEqual(h.pageProblems(ada), []);
});
