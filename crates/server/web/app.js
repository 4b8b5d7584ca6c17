/*
 * hubbub's chat and Q&A page. Speaks the chat contract of namespace '/':
 *   server -> page: messages {hello} | {id,name,text,ts} | raw sendToAll args, question(text),
 *                   answer(question, answer), joined {name,online}, left {name,online}
 *   page -> server: join(name, ack), messages(text, ack), question(text, ack),
 *                   answer(question, answer, ack), who(ack)
 * Every user-supplied string is inserted with textContent, never as HTML. The page keeps the
 * person's nickname across reconnections (it joins again by itself), queues messages typed
 * while offline and sends them once joined again, and marks a message "not sent" when the
 * server refuses it or the connection drops before the server confirmed it.
 */
(function () {
  'use strict';

  const ACK_TIMEOUT_MS = 10000;
  const $ = (id) => document.getElementById(id);
  const ui = {
    connection: $('connection'), connectionText: $('connection-text'), online: $('online-count'),
    joinForm: $('join-form'), nameInput: $('name-input'), joinButton: $('join-button'), joinStatus: $('join-status'),
    messages: $('messages'), messageForm: $('message-form'), messageInput: $('message-input'),
    messageStatus: $('message-status'),
    questionForm: $('question-form'), questionLabel: $('question-label'), questionInput: $('question-input'),
    askButton: $('ask-button'), questionStatus: $('question-status'),
    questions: $('questions'), noQuestions: $('no-questions'), questionTemplate: $('question-template'),
  };

  const state = {
    name: null,           // the nickname chosen by the person; joined again after every reconnect
    joinedAs: null,       // the nickname the server acknowledged on the current session
    ready: false,         // connected and the join of this connection was acknowledged
    asked: false,         // the person used their one question
    everConnected: false,
    helloShown: false,
    seen: new Set(),      // "id@ts" of every chat message shown, so replayed history is not repeated
    outbox: [],           // own messages waiting for the connection (and the join) to come back
    replaying: false,     // between 'connect' and the first ack: the server replays its Q&A
    replayCounts: new Map(),
    questions: new Map(), // question text -> { answersEl, counts: Map(answer text -> times shown) }
    questionSeq: 0,
  };

  const socket = io();

  // ----- connection state -----------------------------------------------------------------

  function setConnection(kind, text) {
    ui.connection.dataset.state = kind;
    ui.connectionText.textContent = text;
  }

  function setOnline(n) {
    if (Number.isInteger(n) && n >= 0) ui.online.textContent = String(n);
  }

  socket.on('connect', () => {
    state.everConnected = true;
    ui.online.parentElement.classList.remove('stale');
    if (navigator.onLine) setConnection('connected', 'Connected');
    if (socket.recovered && state.joinedAs !== null && state.joinedAs === state.name) {
      // Connection state recovery: the server kept this session (nickname included) and has
      // just sent what was missed, so nothing is joined or replayed again.
      state.ready = true;
      flushOutbox();
    } else {
      state.joinedAs = null;
      state.replaying = true;
      state.replayCounts = new Map();
      if (state.name) join(state.name, true);
    }
    socket.timeout(ACK_TIMEOUT_MS).emit('who', (err, res) => {
      state.replaying = false;
      if (!err && res) setOnline(res.online);
    });
  });

  socket.on('disconnect', (reason) => {
    state.ready = false;
    ui.online.parentElement.classList.add('stale'); // the count is last known, not live
    markOutboxWaiting();
    if (reason === 'io client disconnect') {
      setConnection('offline', 'Offline');
    } else if (reason === 'io server disconnect') {
      // The server ended the session (e.g. it is shutting down): come back after a moment.
      setConnection('reconnecting', 'Reconnecting…');
      setTimeout(() => socket.connect(), 500 + Math.random() * 1000);
    } else {
      setConnection('reconnecting', 'Reconnecting…');
    }
  });

  socket.on('connect_error', (err) => {
    if (!socket.active) {
      // Refused by the server (CONNECT_ERROR): the client does not retry on its own.
      setConnection('offline', 'Refused by the server: ' + err.message + '. Retrying soon…');
      setTimeout(() => socket.connect(), 5000 + Math.random() * 5000);
      return;
    }
    if (!navigator.onLine) return;
    setConnection('reconnecting', state.everConnected ? 'Reconnecting…' : 'Cannot reach the server, retrying…');
  });
  socket.io.on('reconnect_attempt', (attempt) => {
    if (navigator.onLine) setConnection('reconnecting', 'Reconnecting… (attempt ' + attempt + ')');
  });
  socket.io.on('reconnect_failed', () => setConnection('offline', 'Offline'));
  // The browser knows first when the network is gone; a WebSocket may take until the next
  // missed heartbeat to notice. While offline, new messages wait in the outbox.
  window.addEventListener('offline', () => {
    setConnection('offline', 'Offline: waiting for the network');
    markOutboxWaiting();
  });
  window.addEventListener('online', () => {
    if (socket.connected) {
      setConnection('connected', 'Connected');
      flushOutbox();
    } else {
      setConnection('reconnecting', 'Reconnecting…');
      socket.connect(); // do not wait for the next back-off step
    }
  });

  // ----- rendering helpers (textContent only) ----------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function appendToLog(li) {
    const log = ui.messages;
    const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    log.appendChild(li);
    if (nearBottom) log.scrollTop = log.scrollHeight;
  }

  function timeElement(ts) {
    const date = new Date(ts);
    const t = el('time', 'time', date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
    t.dateTime = date.toISOString();
    return t;
  }

  function addSystem(text, className) {
    appendToLog(el('li', 'system' + (className ? ' ' + className : ''), text));
  }

  function messageItem(name, text, ts, own) {
    const li = el('li', own ? 'message own' : 'message');
    const meta = el('p', 'meta');
    meta.appendChild(el('span', 'name', name));
    if (ts) meta.appendChild(timeElement(ts));
    li.appendChild(meta);
    li.appendChild(el('p', 'text', text));
    return li;
  }

  function describe(value) {
    if (typeof value === 'string') return value;
    if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return '[' + value.byteLength + ' bytes]';
    try { return JSON.stringify(value); } catch (_) { return String(value); }
  }

  // ----- chat ------------------------------------------------------------------------------

  const messageKey = (m) => (m.id !== undefined && m.ts !== undefined ? m.id + '@' + m.ts : null);

  socket.on('messages', (...args) => {
    const m = args[0];
    if (args.length === 1 && m && typeof m === 'object' && !Array.isArray(m)) {
      if (typeof m.hello === 'string') {
        if (!state.helloShown && m.hello !== '') addSystem(m.hello, 'hello');
        state.helloShown = true;
        return;
      }
      if (typeof m.name === 'string' && typeof m.text === 'string') {
        const key = messageKey(m);
        if (key && state.seen.has(key)) return;
        if (key) state.seen.add(key);
        appendToLog(messageItem(m.name, m.text, typeof m.ts === 'number' ? m.ts : null, false));
        return;
      }
    }
    // A raw broadcast (sendToAll): show its arguments as they came, as text.
    addSystem('Broadcast: ' + args.map(describe).join(' '), 'raw');
  });

  socket.on('joined', (info) => {
    if (!info || typeof info.name !== 'string') return;
    addSystem(info.name + ' joined');
    setOnline(info.online);
  });

  socket.on('left', (info) => {
    if (!info || typeof info.name !== 'string') return;
    addSystem(info.name + ' left');
    setOnline(info.online);
  });

  function join(name, automatic) {
    ui.joinButton.disabled = true;
    socket.timeout(ACK_TIMEOUT_MS).emit('join', name, (err, res) => {
      ui.joinButton.disabled = false;
      if (err) {
        if (!automatic) ui.joinStatus.textContent = 'No answer from the server; you will join when the connection is back.';
        return;
      }
      if (res && res.ok) {
        state.name = typeof res.name === 'string' ? res.name : name;
        state.joinedAs = state.name;
        state.ready = true;
        ui.joinStatus.textContent = 'You are chatting as ' + state.name + '.';
        ui.joinButton.textContent = 'Rename';
        ui.nameInput.value = state.name;
        setOnline(res.online);
        flushOutbox();
      } else {
        ui.joinStatus.textContent = 'Could not join: ' + describe(res && res.error ? res.error : 'refused') + '.';
        if (automatic) state.ready = false;
      }
    });
  }

  ui.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = ui.nameInput.value.trim();
    if (!name) {
      ui.joinStatus.textContent = 'A nickname needs at least one character.';
      return;
    }
    if (!socket.connected) {
      state.name = name;
      ui.joinStatus.textContent = 'You will join as ' + name + ' when the connection is back.';
      return;
    }
    join(name, false);
  });

  function setItemState(item, kind, label) {
    item.state = kind;
    item.li.dataset.state = kind;
    item.statusEl.textContent = label;
    item.retryButton.hidden = kind !== 'failed';
  }

  function markOutboxWaiting() {
    for (const item of state.outbox) setItemState(item, 'queued', 'Waiting for the connection, will be sent');
  }

  function flushOutbox() {
    if (!state.ready || !socket.connected || !navigator.onLine) {
      markOutboxWaiting();
      return;
    }
    for (const item of state.outbox.splice(0)) send(item);
  }

  function send(item) {
    setItemState(item, 'sending', 'Sending…');
    socket.timeout(ACK_TIMEOUT_MS).emit('messages', item.text, (err, res) => {
      if (err) {
        setItemState(item, 'failed', 'Not sent: the connection dropped before the server confirmed it');
      } else if (res && res.ok) {
        const key = messageKey(res);
        if (key) state.seen.add(key);
        if (typeof res.ts === 'number') item.li.querySelector('.meta').appendChild(timeElement(res.ts));
        setItemState(item, 'sent', '');
      } else {
        setItemState(item, 'failed', 'Not sent: ' + describe(res && res.error ? res.error : 'refused by the server'));
      }
    });
  }

  ui.messageForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = ui.messageInput.value;
    if (!text.trim()) return;
    if (!state.name) {
      ui.messageStatus.textContent = 'Choose a nickname first.';
      ui.nameInput.focus();
      return;
    }
    ui.messageStatus.textContent = '';
    ui.messageInput.value = '';
    const li = messageItem(state.name, text, null, true);
    const statusEl = el('p', 'delivery');
    const retryButton = el('button', 'retry', 'Retry');
    retryButton.type = 'button';
    retryButton.hidden = true;
    li.appendChild(statusEl);
    li.appendChild(retryButton);
    const item = { text, li, statusEl, retryButton, state: 'queued' };
    retryButton.addEventListener('click', () => {
      state.outbox.push(item);
      flushOutbox();
    });
    appendToLog(li);
    state.outbox.push(item);
    flushOutbox();
  });

  // ----- questions and answers -------------------------------------------------------------

  function ensureQuestion(text) {
    let entry = state.questions.get(text);
    if (entry) return entry;
    const fragment = ui.questionTemplate.content.cloneNode(true);
    const li = fragment.querySelector('.question');
    const n = ++state.questionSeq;
    li.querySelector('.question-text').textContent = text;
    const form = li.querySelector('.answer-form');
    const input = form.querySelector('input');
    const label = form.querySelector('label');
    const hint = form.querySelector('.hint');
    input.id = 'answer-input-' + n;
    hint.id = 'answer-status-' + n;
    input.setAttribute('aria-describedby', hint.id);
    label.htmlFor = input.id;
    label.textContent = 'Your answer to: ' + text;
    entry = { answersEl: li.querySelector('.answers'), counts: new Map() };
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const answer = input.value.trim();
      if (!answer) return;
      if (!socket.connected) {
        hint.textContent = 'Offline: your answer is kept here, send it once connected.';
        return;
      }
      hint.textContent = '';
      socket.timeout(ACK_TIMEOUT_MS).emit('answer', text, answer, (err, res) => {
        if (err) hint.textContent = 'Not sent: no answer from the server, try again.';
        else if (res && res.error) hint.textContent = 'Not sent: ' + describe(res.error);
        else {
          if (input.value.trim() === answer) input.value = '';
          addAnswer(entry, answer);
        }
      });
    });
    state.questions.set(text, entry);
    ui.questions.appendChild(fragment);
    ui.noQuestions.hidden = true;
    return entry;
  }

  function addAnswer(entry, answer) {
    entry.counts.set(answer, (entry.counts.get(answer) || 0) + 1);
    entry.answersEl.appendChild(el('li', 'answer', answer));
  }

  socket.on('question', (text) => {
    if (typeof text === 'string') ensureQuestion(text);
  });

  socket.on('answer', (question, answer) => {
    if (typeof question !== 'string' || typeof answer !== 'string') return;
    const entry = ensureQuestion(question);
    if (state.replaying) {
      // After a reconnection the server replays every stored answer: show only those not shown yet.
      const key = question + '\u0000' + answer;
      const seenInReplay = (state.replayCounts.get(key) || 0) + 1;
      state.replayCounts.set(key, seenInReplay);
      if (seenInReplay <= (entry.counts.get(answer) || 0)) return;
    }
    addAnswer(entry, answer);
  });

  function markAsked(message) {
    state.asked = true;
    ui.questionInput.disabled = true;
    ui.askButton.disabled = true;
    ui.askButton.textContent = 'Asked';
    ui.questionLabel.textContent = 'You have asked your question (one per person)';
    ui.questionStatus.textContent = message;
  }

  ui.questionForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = ui.questionInput.value.trim();
    if (!text || state.asked) return;
    if (!socket.connected) {
      ui.questionStatus.textContent = 'Offline: your question is kept here, ask it once connected.';
      return;
    }
    ui.askButton.disabled = true;
    socket.timeout(ACK_TIMEOUT_MS).emit('question', text, (err, res) => {
      if (err) {
        ui.askButton.disabled = false;
        ui.questionStatus.textContent = 'Not asked: no answer from the server, try again.';
      } else if (res && res.error === 'one question per connection') {
        markAsked('The server says you have already asked your question.');
      } else if (res && res.error) {
        ui.askButton.disabled = false;
        ui.questionStatus.textContent = 'Not asked: ' + describe(res.error);
      } else {
        ui.questionInput.value = '';
        ensureQuestion(text);
        markAsked('Your question is on the board.');
      }
    });
  });
})();
