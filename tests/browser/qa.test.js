// The Q&A panel across pages: ask, answer, replay to later pages, and the one-question rule.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
let browser;

test.before(async () => {
  server = await new h.HubbubServer().start();
  browser = await h.launchBrowser();
});

test.after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** Questions as shown: [{question, answers: [...]}]. */
function board(page) {
  return page.$$eval('#questions .question', (items) => items.map((li) => ({
    question: li.querySelector('.question-text').textContent,
    answers: [...li.querySelectorAll('.answer')].map((a) => a.textContent),
  })));
}

async function ask(page, text) {
  await page.getByLabel('Your question (you may ask one)').fill(text);
  await page.getByLabel('Your question (you may ask one)').press('Enter');
}

async function answer(page, question, text) {
  const box = page.getByLabel('Your answer to: ' + question, { exact: true });
  await box.fill(text);
  await box.press('Enter');
}

const hasAnswer = ([q, a]) => [...document.querySelectorAll('#questions .question')]
  .some((li) => li.querySelector('.question-text').textContent === q
    && [...li.querySelectorAll('.answer')].some((x) => x.textContent === a));

test('ask, answer and replay across pages, one question per person', async () => {
  const asker = await h.openPage(browser, server.url);
  const helper = await h.openPage(browser, server.url);
  await h.waitConnected(asker);
  await h.waitConnected(helper);
  assert.equal(await asker.locator('#no-questions').isVisible(), true);

  const q = 'How do I scale hubbub?';
  await ask(asker, q);
  // The asker's control says the question is used up.
  await asker.waitForSelector('#question-label:text("You have asked your question")');
  assert.equal(await asker.locator('#question-input').isDisabled(), true);
  assert.equal(await asker.locator('#ask-button').isDisabled(), true);
  assert.equal(await asker.locator('#ask-button').textContent(), 'Asked');

  await helper.waitForFunction((text) => [...document.querySelectorAll('.question-text')]
    .some((e) => e.textContent === text), q);
  assert.equal(await helper.locator('#no-questions').isVisible(), false);

  await answer(helper, q, 'Run more replicas with Redis');
  await asker.waitForFunction(hasAnswer, [q, 'Run more replicas with Redis']);
  await answer(asker, q, 'And read the docs');
  await helper.waitForFunction(hasAnswer, [q, 'And read the docs']);

  const expected = [{ question: q, answers: ['Run more replicas with Redis', 'And read the docs'] }];
  assert.deepEqual(await board(asker), expected);
  assert.deepEqual(await board(helper), expected);

  // A page opened later gets the stored question followed by its answers.
  const late = await h.openPage(browser, server.url);
  await late.waitForFunction(hasAnswer, [q, 'And read the docs']);
  assert.deepEqual(await board(late), expected);

  // The server's rule, seen from a raw connection on the page: the second question of a
  // connection is refused and never reaches the others.
  const acks = await late.evaluate(() => new Promise((resolve) => {
    const raw = io({ forceNew: true });
    raw.emit('question', 'First raw question?', (first) => {
      raw.emit('question', 'Second raw question?', (second) => {
        // A broadcast after the refused question: if that question had been broadcast, it
        // would have reached the others before this marker.
        raw.emit('sendToAll', 'marker after second question');
        resolve([first, second]);
      });
    });
  }));
  assert.equal(acks[0].ok, true);
  assert.deepEqual(acks[1], { error: 'one question per connection' });
  await helper.waitForFunction(() => [...document.querySelectorAll('#messages .system')]
    .some((li) => li.textContent === 'Broadcast: marker after second question'));
  const questions = (await board(helper)).map((x) => x.question);
  assert.deepEqual(questions, [q, 'First raw question?']);

  for (const page of [asker, helper, late]) assert.deepEqual(h.pageProblems(page), []);
  for (const page of [asker, helper, late]) await page.context().close();
});
