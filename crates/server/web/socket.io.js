/*!
 * hubbub's browser client for Socket.IO v5 over Engine.IO v4, written for this project.
 *
 * Provides the global `io` that pages written for the socket.io tutorial expect:
 *   const socket = io(url?, options?)   // or io.connect(...)
 *   socket.on / once / off / onAny / emit(event, ...args, ack?) / timeout(ms).emit(...)
 *   socket.id, socket.connected, socket.connect(), socket.disconnect()
 *   events 'connect', 'disconnect' (reason), 'connect_error' (Error)
 *   socket.io (the Manager): 'reconnect_attempt', 'reconnect', 'reconnect_error', 'reconnect_failed'
 * Options: path ('/socket.io'), query, auth (object or function(cb)), transports
 * (['websocket', 'polling']: WebSocket first, HTTP long-polling when it cannot be opened),
 * timeout (20000 ms per connection attempt), autoConnect (true), forceNew, reconnection (true),
 * reconnectionAttempts (Infinity), reconnectionDelay (1000), reconnectionDelayMax (5000),
 * randomizationFactor (0.5).
 *
 * Layers, bottom up: Engine (one Engine.IO session over one transport, heartbeat),
 * Manager (packet codec, binary attachments, reconnection with back-off, namespaces),
 * Socket (the application-facing API of one namespace). No third-party code.
 */
(function (global) {
  'use strict';

  // ---------------------------------------------------------------------------------------
  // A minimal event emitter. Listener exceptions are reported asynchronously so that one
  // faulty handler cannot break packet processing.

  class Emitter {
    constructor() { this._listeners = new Map(); }
    on(event, fn) {
      if (!this._listeners.has(event)) this._listeners.set(event, []);
      this._listeners.get(event).push(fn);
      return this;
    }
    once(event, fn) {
      const wrapper = (...args) => { this.off(event, wrapper); fn.apply(this, args); };
      wrapper.original = fn;
      return this.on(event, wrapper);
    }
    off(event, fn) {
      if (event === undefined) { this._listeners.clear(); return this; }
      if (fn === undefined) { this._listeners.delete(event); return this; }
      const list = this._listeners.get(event) || [];
      const i = list.findIndex((l) => l === fn || l.original === fn);
      if (i >= 0) list.splice(i, 1);
      return this;
    }
    listeners(event) { return (this._listeners.get(event) || []).slice(); }
    hasListeners(event) { return this.listeners(event).length > 0; }
    _fire(event, ...args) {
      for (const fn of this.listeners(event)) {
        try { fn.apply(this, args); } catch (err) { setTimeout(() => { throw err; }); }
      }
    }
  }
  Emitter.prototype.addEventListener = Emitter.prototype.on;
  Emitter.prototype.removeListener = Emitter.prototype.off;
  Emitter.prototype.removeAllListeners = function (event) { return this.off(event); };

  // ---------------------------------------------------------------------------------------
  // Engine.IO v4: packet types are one character; a message ('4') carries text or, on its
  // own, binary. Long-polling payloads join packets with the record separator and send
  // binary as 'b' + base64. WebSocket frames carry one packet each, binary frames raw.

  const EIO = { open: '0', close: '1', ping: '2', pong: '3', message: '4', upgrade: '5', noop: '6' };
  const SEPARATOR = '\x1e';

  function toBytes(data) {
    return data instanceof ArrayBuffer ? new Uint8Array(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }

  function bytesToBase64(data) {
    const bytes = toBytes(data);
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  function base64ToBuffer(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  const isBinary = (data) => data instanceof ArrayBuffer || ArrayBuffer.isView(data);

  /** Engine.IO over long-polling: one pending GET at a time, one POST at a time. */
  class PollingTransport {
    constructor(engine) {
      this.name = 'polling';
      this.engine = engine;
      this.closed = false;
      this.posting = false;
      this.queue = [];
      this.abort = new AbortController();
    }
    open() { this._pollLoop(); }
    async _pollLoop() {
      while (!this.closed) {
        let text;
        try {
          const res = await fetch(this.engine._url('polling'), {
            cache: 'no-store', credentials: this.engine.opts.withCredentials ? 'include' : 'same-origin',
            signal: this.abort.signal,
          });
          if (!res.ok) throw new Error('polling request failed with HTTP ' + res.status);
          text = await res.text();
        } catch (err) {
          this._fail(err);
          return;
        }
        for (const packet of text.split(SEPARATOR)) {
          if (this.closed) return;
          if (packet === '') continue;
          this.engine._onPacket(packet[0] === 'b'
            ? { type: EIO.message, data: base64ToBuffer(packet.slice(1)) }
            : { type: packet[0], data: packet.slice(1) });
        }
      }
    }
    send(packets) {
      this.queue.push(...packets);
      this._flush();
    }
    async _flush() {
      if (this.posting || this.closed || this.queue.length === 0 || !this.engine.sid) return;
      const body = this.queue.map((p) => (isBinary(p.data) ? 'b' + bytesToBase64(p.data) : p.type + (p.data || '')))
        .join(SEPARATOR);
      this.queue = [];
      this.posting = true;
      try {
        const res = await fetch(this.engine._url('polling'), {
          method: 'POST', body, headers: { 'content-type': 'text/plain;charset=UTF-8' },
          credentials: this.engine.opts.withCredentials ? 'include' : 'same-origin', signal: this.abort.signal,
        });
        if (!res.ok) throw new Error('polling request failed with HTTP ' + res.status);
        await res.text();
      } catch (err) {
        this._fail(err);
        return;
      }
      this.posting = false;
      this._flush();
    }
    _fail(err) {
      if (this.closed) return;
      this.close(false);
      this.engine._onTransportClose(this, 'transport error', err);
    }
    close(sayGoodbye) {
      if (this.closed) return;
      this.closed = true;
      if (sayGoodbye && this.engine.sid) {
        // Tell the server the session is over so that it need not wait for the ping timeout.
        fetch(this.engine._url('polling'), { method: 'POST', body: EIO.close, keepalive: true,
          headers: { 'content-type': 'text/plain;charset=UTF-8' } }).catch(() => {});
      }
      this.abort.abort();
    }
  }

  /** Engine.IO over one WebSocket. */
  class WebSocketTransport {
    constructor(engine) {
      this.name = 'websocket';
      this.engine = engine;
      this.closed = false;
    }
    open() {
      let ws;
      try {
        ws = this.ws = new WebSocket(this.engine._url('websocket'));
      } catch (err) {
        setTimeout(() => this._fail('transport error', err));
        return;
      }
      ws.binaryType = 'arraybuffer';
      ws.onmessage = (ev) => {
        if (this.closed) return;
        this.engine._onPacket(typeof ev.data === 'string'
          ? { type: ev.data[0], data: ev.data.slice(1) }
          : { type: EIO.message, data: ev.data });
      };
      ws.onclose = (ev) => this._fail('transport close', new Error('websocket closed (code ' + ev.code + ')'));
      ws.onerror = () => {}; // always followed by a close event
    }
    send(packets) {
      for (const p of packets) {
        if (this.ws.readyState !== WebSocket.OPEN) return;
        this.ws.send(isBinary(p.data) ? p.data : p.type + (p.data || ''));
      }
    }
    _fail(reason, err) {
      if (this.closed) return;
      this.close();
      this.engine._onTransportClose(this, reason, err);
    }
    close() {
      if (this.closed) return;
      this.closed = true;
      if (this.ws) {
        this.ws.onmessage = this.ws.onclose = null;
        try { this.ws.close(); } catch (_) { /* already closing */ }
      }
    }
  }

  const TRANSPORTS = { websocket: WebSocketTransport, polling: PollingTransport };

  /**
   * One Engine.IO session. Tries each transport in turn until one completes the handshake.
   * Events: 'open', 'message' (string | ArrayBuffer), 'close' (reason, error?).
   */
  class Engine extends Emitter {
    constructor(target, opts) {
      super();
      this.target = target;
      this.opts = opts;
      this.state = 'opening';
      this.sid = null;
      this.transport = null;
      this.writeBuffer = [];
    }
    open() { this._tryTransport(0); }
    _url(transport) {
      const secure = this.target.secure;
      const scheme = transport === 'websocket' ? (secure ? 'wss:' : 'ws:') : (secure ? 'https:' : 'http:');
      const params = new URLSearchParams(this.opts.query || {});
      params.set('EIO', '4');
      params.set('transport', transport);
      if (this.sid) params.set('sid', this.sid);
      if (transport === 'polling') params.set('t', Date.now().toString(36) + Math.random().toString(36).slice(2, 6));
      return scheme + '//' + this.target.host + this.opts.path + '?' + params;
    }
    _tryTransport(index) {
      const names = this.opts.transports;
      const Transport = TRANSPORTS[names[index]];
      if (!Transport) {
        this._onClose('transport error', new Error('unknown transport ' + names[index]));
        return;
      }
      this.transportIndex = index;
      this.sid = null;
      this.transport = new Transport(this);
      clearTimeout(this.openTimer);
      this.openTimer = setTimeout(() => {
        const t = this.transport;
        t.close(false);
        this._onTransportClose(t, 'transport error', new Error('timeout'));
      }, this.opts.timeout);
      this.transport.open();
    }
    _onTransportClose(transport, reason, err) {
      if (transport !== this.transport || this.state === 'closed') return;
      if (this.state === 'opening' && this.transportIndex + 1 < this.opts.transports.length) {
        this._tryTransport(this.transportIndex + 1); // e.g. WebSocket refused: fall back to polling
        return;
      }
      this._onClose(reason, err);
    }
    _onPacket(packet) {
      switch (packet.type) {
        case EIO.open: {
          if (this.state !== 'opening') return;
          let handshake;
          try { handshake = JSON.parse(packet.data); } catch (_) { handshake = null; }
          if (!handshake || typeof handshake.sid !== 'string') {
            this._onClose('parse error', new Error('invalid handshake'));
            return;
          }
          clearTimeout(this.openTimer);
          this.sid = handshake.sid;
          this.pingInterval = handshake.pingInterval || 25000;
          this.pingTimeout = handshake.pingTimeout || 20000;
          this.state = 'open';
          this._resetPingTimer();
          this._fire('open');
          this._flush();
          break;
        }
        case EIO.ping:
          this._resetPingTimer();
          this.send([{ type: EIO.pong }]);
          break;
        case EIO.message:
          if (this.state === 'open') this._fire('message', packet.data);
          break;
        case EIO.close:
          this._onClose('transport close');
          break;
        default: // noop, pong, upgrade: nothing to do
      }
    }
    _resetPingTimer() {
      // The server pings every pingInterval; silence beyond pingInterval + pingTimeout means it is gone.
      clearTimeout(this.pingTimer);
      this.pingTimer = setTimeout(() => this._onClose('ping timeout'), this.pingInterval + this.pingTimeout);
    }
    send(packets) {
      this.writeBuffer.push(...packets);
      this._flush();
    }
    _flush() {
      if (this.state !== 'open' || this.writeBuffer.length === 0) return;
      const packets = this.writeBuffer;
      this.writeBuffer = [];
      this.transport.send(packets);
    }
    close() {
      if (this.state === 'closed') return;
      this._flush();
      this._onClose('forced close', undefined, true);
    }
    _onClose(reason, err, sayGoodbye) {
      if (this.state === 'closed') return;
      const wasOpen = this.state === 'open';
      this.state = 'closed';
      clearTimeout(this.openTimer);
      clearTimeout(this.pingTimer);
      if (this.transport) this.transport.close(sayGoodbye);
      this._fire('close', reason, err || new Error(reason), wasOpen);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Socket.IO v5 packets: <type>[<attachments>-][<namespace>,][<ack id>][<JSON>]. Binary
  // arguments are replaced by {"_placeholder":true,"num":i} and sent as separate messages.

  const SIO = { CONNECT: 0, DISCONNECT: 1, EVENT: 2, ACK: 3, CONNECT_ERROR: 4, BINARY_EVENT: 5, BINARY_ACK: 6 };

  function encodePacket(packet) {
    const attachments = [];
    const data = packet.data === undefined ? undefined : extractBinary(packet.data, attachments);
    let type = packet.type;
    if (attachments.length && type === SIO.EVENT) type = SIO.BINARY_EVENT;
    if (attachments.length && type === SIO.ACK) type = SIO.BINARY_ACK;
    let text = String(type);
    if (attachments.length) text += attachments.length + '-';
    if (packet.nsp !== '/') text += packet.nsp + ',';
    if (packet.id !== undefined) text += packet.id;
    if (data !== undefined) text += JSON.stringify(data);
    return [text, ...attachments];
  }

  function extractBinary(value, attachments) {
    if (isBinary(value)) {
      attachments.push(value);
      return { _placeholder: true, num: attachments.length - 1 };
    }
    if (Array.isArray(value)) return value.map((v) => extractBinary(v, attachments));
    if (value && typeof value === 'object' && typeof value.toJSON !== 'function') {
      const out = {};
      for (const key of Object.keys(value)) out[key] = extractBinary(value[key], attachments);
      return out;
    }
    return value;
  }

  function insertBinary(value, attachments) {
    if (Array.isArray(value)) return value.map((v) => insertBinary(v, attachments));
    if (value && typeof value === 'object') {
      if (value._placeholder === true && Number.isInteger(value.num)) {
        if (value.num < 0 || value.num >= attachments.length) throw new Error('bad attachment index');
        return attachments[value.num];
      }
      for (const key of Object.keys(value)) value[key] = insertBinary(value[key], attachments);
    }
    return value;
  }

  function decodePacket(text) {
    const type = Number(text[0]);
    if (!(type >= 0 && type <= 6)) throw new Error('unknown packet type ' + text[0]);
    const packet = { type, nsp: '/', attachments: 0 };
    let i = 1;
    if (type === SIO.BINARY_EVENT || type === SIO.BINARY_ACK) {
      const dash = text.indexOf('-', i);
      packet.attachments = Number(text.slice(i, dash));
      if (dash < 0 || !Number.isInteger(packet.attachments)) throw new Error('bad attachment count');
      i = dash + 1;
    }
    if (text[i] === '/') {
      const comma = text.indexOf(',', i);
      const end = comma < 0 ? text.length : comma;
      packet.nsp = text.slice(i, end);
      i = comma < 0 ? end : end + 1;
    }
    let j = i;
    while (j < text.length && text[j] >= '0' && text[j] <= '9') j++;
    if (j > i) { packet.id = Number(text.slice(i, j)); i = j; }
    if (i < text.length) packet.data = JSON.parse(text.slice(i));
    const valid = type === SIO.CONNECT || type === SIO.CONNECT_ERROR
      ? packet.data === undefined || typeof packet.data === 'object'
      : type === SIO.DISCONNECT ? packet.data === undefined
        : type === SIO.EVENT || type === SIO.BINARY_EVENT
          ? Array.isArray(packet.data) && packet.data.length > 0
          : Array.isArray(packet.data) && packet.id !== undefined;
    if (!valid) throw new Error('invalid payload for packet type ' + type);
    return packet;
  }

  // ---------------------------------------------------------------------------------------
  // The Manager owns the Engine.IO connection shared by the sockets of one server and
  // reconnects it with exponential back-off and jitter.

  class Manager extends Emitter {
    constructor(target, opts) {
      super();
      this.target = target;
      let path = opts.path || '/socket.io';
      if (!path.endsWith('/')) path += '/';
      this.opts = Object.assign({
        transports: ['websocket', 'polling'], timeout: 20000, reconnection: true,
        reconnectionAttempts: Infinity, reconnectionDelay: 1000, reconnectionDelayMax: 5000,
        randomizationFactor: 0.5,
      }, opts, { path });
      this.nsps = new Map();     // namespace -> Socket
      this.state = 'closed';     // 'closed' | 'opening' | 'open'
      this.engine = null;
      this.attempts = 0;         // failed attempts since the last successful open
      this.reconnecting = false;
      this.skipReconnect = false;
      this.partial = null;       // a binary packet waiting for its attachments
    }

    /** The Socket for namespace `nsp` (created on first use). */
    socket(nsp, opts) {
      let socket = this.nsps.get(nsp);
      if (!socket) {
        socket = new Socket(this, nsp, opts || {});
        this.nsps.set(nsp, socket);
      }
      return socket;
    }

    open(callback) {
      this.skipReconnect = false;
      if (this.state !== 'closed') return this;
      clearTimeout(this.reconnectTimer);
      this.state = 'opening';
      // After WebSocket failed and polling worked, later attempts start with polling: a proxy
      // that swallows WebSocket upgrades would otherwise cost a timeout on every reconnection.
      const transports = this.opts.transports.slice(this.transportStart || 0);
      const engine = this.engine = new Engine(this.target, Object.assign({}, this.opts, { transports }));
      engine.on('open', () => {
        if (engine.transportIndex > 0) this.transportStart = (this.transportStart || 0) + engine.transportIndex;
        this.state = 'open';
        this.partial = null;
        if (callback) callback();
        this._fire('open');
        if (this.reconnecting) {
          const attempts = this.attempts;
          this.reconnecting = false;
          this.attempts = 0;
          this._fire('reconnect', attempts);
        }
        this.attempts = 0;
        for (const socket of this.nsps.values()) if (socket.active) socket._sendConnect();
      });
      engine.on('message', (data) => this._onData(data));
      engine.on('close', (reason, err, wasOpen) => {
        if (engine !== this.engine) return;
        this.engine = null;
        this.state = 'closed';
        if (wasOpen) {
          this._fire('close', reason, err);
          for (const socket of this.nsps.values()) socket._onClose(reason);
        } else {
          if (callback) callback(err);
          this._fire('error', err);
          if (this.reconnecting) this._fire('reconnect_error', err);
          for (const socket of this.nsps.values()) if (socket.active && !socket.connected) socket._fire('connect_error', err);
        }
        if (this.opts.reconnection && !this.skipReconnect) this._scheduleReconnect();
      });
      engine.open();
      return this;
    }

    /** Delay before the next attempt: reconnectionDelay * 2^attempts, +/- randomizationFactor, capped. */
    _backoff() {
      const o = this.opts;
      let ms = o.reconnectionDelay * Math.pow(2, this.attempts);
      const jitter = Math.min(Math.max(o.randomizationFactor, 0), 1);
      if (jitter) ms += (Math.random() * 2 - 1) * jitter * ms;
      return Math.floor(Math.max(0, Math.min(ms, o.reconnectionDelayMax)));
    }

    _scheduleReconnect() {
      if (this.attempts >= this.opts.reconnectionAttempts) {
        this.reconnecting = false;
        this.attempts = 0;
        this._fire('reconnect_failed');
        return;
      }
      const delay = this._backoff();
      this.reconnecting = true;
      this.attempts++;
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = setTimeout(() => {
        if (this.skipReconnect || this.state !== 'closed') return;
        this._fire('reconnect_attempt', this.attempts);
        this.open();
      }, delay);
    }

    _onData(data) {
      try {
        if (typeof data === 'string') {
          if (this.partial) throw new Error('text packet while waiting for binary attachments');
          const packet = decodePacket(data);
          if (packet.attachments > 0) {
            this.partial = { packet, buffers: [] };
            return;
          }
          this._dispatch(packet);
        } else {
          if (!this.partial) throw new Error('unexpected binary data');
          this.partial.buffers.push(data);
          if (this.partial.buffers.length === this.partial.packet.attachments) {
            const { packet, buffers } = this.partial;
            this.partial = null;
            packet.data = insertBinary(packet.data, buffers);
            this._dispatch(packet);
          }
        }
      } catch (err) {
        // A peer that breaks the protocol is dropped; reconnection starts over cleanly.
        this.partial = null;
        if (this.engine) this.engine._onClose('parse error', err);
      }
    }

    _dispatch(packet) {
      const socket = this.nsps.get(packet.nsp);
      if (socket) socket._onPacket(packet);
    }

    _send(packet) {
      if (!this.engine) return;
      const [text, ...attachments] = encodePacket(packet);
      this.engine.send([{ type: EIO.message, data: text }, ...attachments.map((data) => ({ type: EIO.message, data }))]);
    }

    /** Called when a socket disconnects on purpose: close the connection when none is left. */
    _socketGone() {
      for (const socket of this.nsps.values()) if (socket.active) return;
      this.skipReconnect = true;
      this.reconnecting = false;
      this.attempts = 0;
      clearTimeout(this.reconnectTimer);
      if (this.engine) this.engine.close();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Socket: one namespace, the API that pages use.

  const RESERVED = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener']);

  class Socket extends Emitter {
    constructor(io, nsp, opts) {
      super();
      this.io = io;
      this.nsp = nsp;
      this.auth = opts.auth;
      this.id = undefined;
      this.connected = false;
      this.active = false;     // wants to be connected (between connect() and disconnect())
      this.sendBuffer = [];    // packets emitted before the connection was up
      this.acks = new Map();   // ack id -> callback
      this.nextAckId = 0;
      this.flags = {};
      this.anyListeners = [];
      // Connection state recovery (Socket.IO 4.6+): the private session id the server gave in
      // its CONNECT reply, and the offset carried by the last event received. Both are sent
      // back on reconnection; `recovered` says whether the server restored the session.
      this._pid = undefined;
      this._lastOffset = undefined;
      this.recovered = false;
      this.receiveBuffer = []; // events that arrive before the CONNECT reply (a recovery's missed events)
      if (opts.autoConnect !== false) this.connect();
    }
    get disconnected() { return !this.connected; }

    connect() {
      if (this.connected) return this;
      this.active = true;
      if (this.io.state === 'open') this._sendConnect();
      else this.io.open();
      return this;
    }
    open() { return this.connect(); }

    disconnect() {
      if (this.connected) this.io._send({ type: SIO.DISCONNECT, nsp: this.nsp });
      this.active = false;
      this._onClose('io client disconnect');
      this.io._socketGone();
      return this;
    }
    close() { return this.disconnect(); }

    /** Emit `event` to the server; a trailing function is called with the server's acknowledgement. */
    emit(event, ...args) {
      if (RESERVED.has(event)) throw new Error('"' + event + '" is a reserved event name');
      const packet = { type: SIO.EVENT, nsp: this.nsp, data: [event, ...args] };
      if (typeof args[args.length - 1] === 'function') {
        const id = this.nextAckId++;
        packet.data.pop();
        this._registerAck(id, args[args.length - 1]);
        packet.id = id;
      }
      this.flags = {};
      if (this.connected) this.io._send(packet);
      else this.sendBuffer.push(packet);
      return this;
    }
    send(...args) { return this.emit('message', ...args); }

    /** `socket.timeout(ms).emit(ev, ..., (err, ...response) => {})`: err is set when no ack came in time. */
    timeout(ms) {
      this.flags.timeout = ms;
      return this;
    }

    emitWithAck(event, ...args) {
      const timeout = this.flags.timeout;
      return new Promise((resolve, reject) => {
        args.push(timeout === undefined ? resolve : (err, value) => (err ? reject(err) : resolve(value)));
        this.emit(event, ...args);
      });
    }

    onAny(fn) { this.anyListeners.push(fn); return this; }
    offAny(fn) {
      this.anyListeners = fn ? this.anyListeners.filter((l) => l !== fn) : [];
      return this;
    }

    _registerAck(id, fn) {
      const timeout = this.flags.timeout;
      if (timeout === undefined) {
        this.acks.set(id, fn);
        return;
      }
      const timer = setTimeout(() => {
        this.acks.delete(id);
        fn.call(this, new Error('operation has timed out'));
      }, timeout);
      const wrapped = (...response) => {
        clearTimeout(timer);
        fn.call(this, null, ...response);
      };
      wrapped.fail = (err) => {
        clearTimeout(timer);
        fn.call(this, err);
      };
      this.acks.set(id, wrapped);
    }

    _sendConnect() {
      this.receiveBuffer = []; // what an earlier attempt got before its CONNECT reply is void
      const send = (auth) => {
        // As the official client: pid and offset first, the application's auth may override them.
        const data = this._pid ? Object.assign({ pid: this._pid, offset: this._lastOffset }, auth) : auth;
        this.io._send(data === undefined
          ? { type: SIO.CONNECT, nsp: this.nsp }
          : { type: SIO.CONNECT, nsp: this.nsp, data });
      };
      if (typeof this.auth === 'function') this.auth(send);
      else send(this.auth);
    }

    _onPacket(packet) {
      switch (packet.type) {
        case SIO.CONNECT:
          if (!packet.data || typeof packet.data.sid !== 'string') {
            this._fire('connect_error', new Error('invalid CONNECT packet'));
            return;
          }
          this.id = packet.data.sid;
          {
            const pid = typeof packet.data.pid === 'string' ? packet.data.pid : undefined;
            this.recovered = pid !== undefined && pid === this._pid;
            if (!this.recovered) this._lastOffset = undefined;
            this._pid = pid;
          }
          this.connected = true;
          // The events a recovery replayed came before the CONNECT reply: deliver them first.
          for (const [args, withAck] of this.receiveBuffer.splice(0)) this._emitEvent(args, withAck);
          this._fire('connect');
          for (const buffered of this.sendBuffer.splice(0)) this.io._send(buffered);
          break;
        case SIO.EVENT:
        case SIO.BINARY_EVENT: {
          const args = packet.data.slice();
          const withAck = packet.id !== undefined;
          if (withAck) args.push(this._ackFunction(packet.id));
          if (this.connected) this._emitEvent(args, withAck);
          else this.receiveBuffer.push([args, withAck]);
          break;
        }
        case SIO.ACK:
        case SIO.BINARY_ACK: {
          const fn = this.acks.get(packet.id);
          if (!fn) return;
          this.acks.delete(packet.id);
          fn.apply(this, packet.data);
          break;
        }
        case SIO.DISCONNECT:
          this.active = false;
          this._onClose('io server disconnect');
          if (!this.active) this.io._socketGone(); // a 'disconnect' handler may have called connect()
          break;
        case SIO.CONNECT_ERROR: {
          const data = packet.data || {};
          const err = new Error(typeof data.message === 'string' ? data.message : 'connection refused');
          err.data = data.data;
          this.active = false;
          this.io._socketGone();
          this._fire('connect_error', err);
          break;
        }
        default:
      }
    }

    /**
     * Hands an event to the listeners. With recovery on (a pid), every event that expects no
     * ack ends with its offset: it is remembered and taken off the arguments, so handlers see
     * exactly what the server emitted. An event that expects an ack carries no offset (its
     * trailing string, if any, belongs to the application), nor does an ACK.
     */
    _emitEvent(args, withAck) {
      if (this._pid && !withAck && args.length > 1 && typeof args[args.length - 1] === 'string') {
        this._lastOffset = args.pop();
      }
      for (const fn of this.anyListeners.slice()) {
        try { fn.apply(this, args); } catch (err) { setTimeout(() => { throw err; }); }
      }
      this._fire(...args);
    }

    _ackFunction(id) {
      let sent = false;
      return (...args) => {
        if (sent) return;
        sent = true;
        this.io._send({ type: SIO.ACK, nsp: this.nsp, id, data: args });
      };
    }

    _onClose(reason) {
      if (!this.connected) return;
      this.connected = false;
      this.id = undefined;
      // Acknowledgements that were waiting with a timeout fail now rather than later.
      for (const [id, fn] of this.acks) {
        if (fn.fail) {
          this.acks.delete(id);
          fn.fail(new Error('socket has been disconnected'));
        }
      }
      this._fire('disconnect', reason);
    }
  }

  // ---------------------------------------------------------------------------------------
  // io(url?, options?): parse the URL, reuse a Manager for the same server unless asked not to.

  function parseTarget(uri) {
    const loc = global.location || { protocol: 'http:', host: 'localhost' };
    if (uri == null || uri === '') uri = loc.protocol + '//' + loc.host;
    else if (uri.startsWith('//')) uri = loc.protocol + uri;
    else if (uri.startsWith('/')) uri = loc.protocol + '//' + loc.host + uri;
    else if (!/^(https?|wss?):\/\//i.test(uri)) uri = loc.protocol + '//' + uri;
    const url = new URL(uri);
    return {
      secure: url.protocol === 'https:' || url.protocol === 'wss:',
      host: url.host,
      nsp: url.pathname && url.pathname !== '' ? url.pathname : '/',
      query: Object.fromEntries(url.searchParams),
    };
  }

  const managers = new Map();

  function io(uri, opts) {
    if (typeof uri === 'object' && uri !== null) { opts = uri; uri = undefined; }
    opts = Object.assign({}, opts);
    const target = parseTarget(uri);
    opts.query = Object.assign({}, target.query, typeof opts.query === 'string'
      ? Object.fromEntries(new URLSearchParams(opts.query)) : opts.query);
    const key = (target.secure ? 's:' : ':') + target.host + (opts.path || '/socket.io');
    let manager = managers.get(key);
    const fresh = opts.forceNew || opts['force new connection'] || opts.multiplex === false
      || !manager || manager.nsps.has(target.nsp);
    if (fresh) {
      manager = new Manager(target, opts);
      if (!opts.forceNew && opts.multiplex !== false) managers.set(key, manager);
    }
    return manager.socket(target.nsp, opts);
  }

  io.connect = io;
  io.io = io;
  io.protocol = 5;
  io.Manager = Manager;
  io.Socket = Socket;

  global.io = io;
  if (typeof module === 'object' && module && module.exports) module.exports = io;
})(typeof globalThis !== 'undefined' ? globalThis : this);
