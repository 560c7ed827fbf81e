/*
 * chanlite.js: a WebSocket client for chanlite apps that reconnects on its own.
 *
 *   <script src="/chanlite.js"></script>   (served by chanlite.static.javascript_route())
 *
 *   const socket = new ChanliteSocket("/chat/lobby/", {
 *     onMessage(data) {},       // parsed JSON when a text frame is JSON, else the
 *                               // string; an ArrayBuffer for a binary frame
 *     onStateChange(state) {},  // "connecting" | "open" | "reconnecting" | "closed"
 *     minDelay: 500,            // ms, reconnect backoff bounds
 *     maxDelay: 30000,
 *     protocols: [],            // WebSocket subprotocols (optional)
 *   });
 *   socket.send({text: "hi"});  // objects are JSON-encoded; strings, ArrayBuffers,
 *                               // typed arrays and Blobs are sent as they are
 *   socket.state;               // the current state
 *   socket.url;                 // the ws: or wss: URL it connects to
 *   socket.closeCode;           // the code of the last close, or null while open
 *   socket.close();             // closes for good, no reconnect; close(code, reason)
 *                               // as WebSocket.close, code 1000 by default
 *
 *   ChanliteSocket.backoff(attempt, minDelay, maxDelay)  // a reconnect delay, in ms
 *   ChanliteSocket.websocketUrl(url, base)               // the URL rules below
 *
 * URLs may be relative ("/chat/lobby/") or absolute; http: and https: become ws: and
 * wss:, so a page served over https connects over wss.
 *
 * States: "connecting" until the first open, "open", "reconnecting" from a lost or
 * failed connection until the next open (however many attempts that takes), "closed"
 * for good. onStateChange is called with "connecting" just after the constructor
 * returns (in a microtask, so the callback may already use the socket), then on every
 * change.
 *
 * Sending while not open: messages are queued and sent, in order, as soon as the
 * socket opens (or reopens). A socket that closes for good drops its queue, and
 * send() after close() throws.
 *
 * Reconnecting: after a lost connection the next attempt waits a random delay in
 * [0, min(maxDelay, minDelay * 2 ** attempt)) ms ("full jitter", so that many clients
 * cut off at once do not come back at once); attempt counts the failures since the
 * last successful open and starts at 0.
 *
 * Refusals: a close code from 4000 to 4999 (the application's own codes) or 1008
 * (policy violation) means the server refused this client; the socket then closes
 * for good instead of reconnecting. Every other code reconnects: 1000 and 1001 (the
 * server closed or restarted), 1006 (the network failed), 1011, 1012, 1013 (the
 * server failed or is busy). A handshake the server rejects (HTTP 403, e.g. chanlite's
 * DenyConnection or allowed_origins) reaches a browser as 1006, which looks like a
 * network failure, and is retried: to stop a client for good, accept the socket and
 * close it with a 4xxx code.
 */
(function (global) {
  "use strict";

  var CONNECTING = "connecting";
  var OPEN = "open";
  var RECONNECTING = "reconnecting";
  var CLOSED = "closed";

  function isRefusal(code) {
    return code === 1008 || (code >= 4000 && code <= 4999);
  }

  function ChanliteSocket(url, options) {
    if (!(this instanceof ChanliteSocket)) {
      throw new TypeError("ChanliteSocket must be called with new");
    }
    options = options || {};
    this.url = ChanliteSocket.websocketUrl(url);
    this.state = CONNECTING;
    this.closeCode = null;
    this.minDelay = options.minDelay === undefined ? 500 : options.minDelay;
    this.maxDelay = options.maxDelay === undefined ? 30000 : options.maxDelay;
    this._onMessage = options.onMessage || function () {};
    this._onStateChange = options.onStateChange || function () {};
    this._protocols = options.protocols;
    this._queue = [];
    this._attempt = 0;
    this._timer = null;
    this._ws = null;
    this._open();
    var self = this;
    queueMicrotask(function () {
      if (self.state === CONNECTING) self._onStateChange(CONNECTING);
    });
  }

  /* The delay before reconnect attempt number `attempt` (0 for the first), in ms. */
  ChanliteSocket.backoff = function (attempt, minDelay, maxDelay, random) {
    var cap = Math.min(maxDelay, minDelay * Math.pow(2, attempt));
    return Math.floor((random || Math.random)() * cap);
  };

  /* `url` as a ws: or wss: URL, resolved against `base` (the page's address). */
  ChanliteSocket.websocketUrl = function (url, base) {
    if (base === undefined && typeof location !== "undefined") base = location.href;
    var resolved = new URL(url, base);
    if (resolved.protocol === "http:") resolved.protocol = "ws:";
    else if (resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved.href;
  };

  ChanliteSocket.prototype.send = function (data) {
    if (this.state === CLOSED) {
      throw new Error("ChanliteSocket.send: the socket is closed");
    }
    var frame = encode(data);
    if (this.state === OPEN) this._ws.send(frame);
    else this._queue.push(frame);
  };

  ChanliteSocket.prototype.close = function (code, reason) {
    if (this.state === CLOSED) return;
    clearTimeout(this._timer);
    this._timer = null;
    var ws = this._ws;
    this._ws = null;
    this.closeCode = code === undefined ? 1000 : code;
    if (ws) {
      detach(ws);
      ws.close(this.closeCode, reason);
    }
    this._setState(CLOSED);
  };

  ChanliteSocket.prototype._open = function () {
    var ws = new WebSocket(this.url, this._protocols);
    ws.binaryType = "arraybuffer";
    var self = this;
    ws.onopen = function () {
      self._attempt = 0;
      self.closeCode = null;
      // Queued messages leave before anything onStateChange sends.
      self.state = OPEN;
      while (self._queue.length) ws.send(self._queue.shift());
      self._onStateChange(OPEN);
    };
    ws.onmessage = function (event) {
      self._onMessage(decode(event.data));
    };
    ws.onclose = function (event) {
      self._lost(ws, event.code);
    };
    this._ws = ws;
  };

  ChanliteSocket.prototype._lost = function (ws, code) {
    if (ws !== this._ws) return;
    detach(ws);
    this._ws = null;
    this.closeCode = code;
    if (isRefusal(code)) {
      this._queue = [];
      this._setState(CLOSED);
      return;
    }
    var delay = ChanliteSocket.backoff(this._attempt, this.minDelay, this.maxDelay);
    this._attempt += 1;
    var self = this;
    this._timer = setTimeout(function () {
      self._timer = null;
      self._open();
    }, delay);
    this._setState(RECONNECTING);
  };

  ChanliteSocket.prototype._setState = function (state) {
    if (state === this.state) return;
    this.state = state;
    if (state === CLOSED) this._queue = [];
    this._onStateChange(state);
  };

  function detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
  }

  function encode(data) {
    if (
      typeof data === "string" ||
      data instanceof ArrayBuffer ||
      ArrayBuffer.isView(data) ||
      (typeof Blob !== "undefined" && data instanceof Blob)
    ) {
      return data;
    }
    return JSON.stringify(data);
  }

  function decode(data) {
    if (typeof data !== "string") return data;
    try {
      return JSON.parse(data);
    } catch (error) {
      return data;
    }
  }

  global.ChanliteSocket = ChanliteSocket;
})(typeof window !== "undefined" ? window : globalThis);
