/*
 * chanlite.js: a WebSocket client for chanlite apps that reconnects on its own.
 *
 *   <script src="/chanlite.js"></script>   (served by chanlite.static.javascript_route())
 *
 *   const socket = new ChanliteSocket("/chat/lobby/", {
 *     onMessage(data, group) {},  // parsed JSON when a text frame is JSON, else the
 *                                 // string; an ArrayBuffer for a binary frame; group:
 *                                 // the group it was sent to, if that keeps a history
 *     onStateChange(state) {},    // "connecting" | "open" | "reconnecting" | "closed"
 *     onOpen(info) {},            // each open: {recovered, groups}, see Recovery
 *     minDelay: 500,              // ms, reconnect backoff bounds
 *     maxDelay: 30000,
 *     protocols: [],              // WebSocket subprotocols (optional)
 *     recover: true,              // take part in recovery (chanlite.v1)
 *     storage: sessionStorage,    // where positions and the client id are kept
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
 * Recovery (docs/protocol.md): the socket offers the subprotocol "chanlite.v1". When
 * the server takes it, the socket keeps the last position it got of each group with
 * history (in `storage`, per URL, so a reload keeps them too) and presents them when
 * it connects, with a client id that stays the same for this tab. The server then
 * sends what the socket missed in those groups, in order and once each, before it
 * reports the outcome; the socket opens only then, calling onOpen({recovered,
 * groups}): `recovered` is true when every group it presented was recovered, false
 * on a first connection and whenever something may be missing (the app should then
 * reload its state); `groups` says it per group. Messages that come meanwhile are
 * delivered right after onOpen. A server without chanlite.v1 (or an app that picks
 * another subprotocol) gets a plain socket, which opens with recovered false.
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
  var SUBPROTOCOL = "chanlite.v1";
  // Longest wait for the server to report the outcome of a recovery (ms).
  var RECOVERY_TIMEOUT = 10000;

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
    this._onOpen = options.onOpen || function () {};
    this._protocols = options.protocols;
    this._recover = options.recover !== false;
    this._storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.recovered = false;
    this._held = null;
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
    var protocols = this._protocols;
    var url = this.url;
    var presented = {};
    if (this._recover) {
      protocols = [].concat(protocols || [], [SUBPROTOCOL]);
      presented = this._positions();
      url = withParams(url, presented, this._clientId());
    }
    var ws = new WebSocket(url, protocols);
    ws.binaryType = "arraybuffer";
    var self = this;
    ws.onopen = function () {
      self._attempt = 0;
      self.closeCode = null;
      self._v1 = ws.protocol === SUBPROTOCOL;
      if (self._v1 && Object.keys(presented).length) {
        self._held = [];
        self._timer = setTimeout(function () {
          self._timer = null;
          self._recovered({recovered: {}, positions: {}}, presented);
        }, RECOVERY_TIMEOUT);
        self._presented = presented;
        return;
      }
      self._opened(false, {});
    };
    ws.onmessage = function (event) {
      if (self._v1) self._frame(event.data);
      else self._onMessage(decode(event.data));
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
    // A recovery cut short: what it held is sent again on the next one.
    clearTimeout(this._timer);
    this._timer = null;
    this._held = this._presented = null;
    this._v1 = false;
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

  /* The socket is open: queued messages leave before anything onOpen sends. */
  ChanliteSocket.prototype._opened = function (recovered, groups) {
    this.state = OPEN;
    this.recovered = recovered;
    while (this._queue.length) this._ws.send(this._queue.shift());
    this._onStateChange(OPEN);
    this._onOpen({recovered: recovered, groups: groups});
  };

  /* A chanlite.v1 frame: a reply, a group's message, or the outcome of recovery. */
  ChanliteSocket.prototype._frame = function (text) {
    var frame = JSON.parse(text);
    if (frame.recovery) {
      this._recovered(frame.recovery, this._presented || {});
      return;
    }
    var data = "bytes" in frame ? fromBase64(frame.bytes) : decode(frame.text);
    if (this._held) this._held.push([data, frame.g, frame.p]);
    else this._deliver(data, frame.g, frame.p);
  };

  ChanliteSocket.prototype._deliver = function (data, group, position) {
    if (group) this._keepPosition(group, position);
    this._onMessage(data, group);
  };

  ChanliteSocket.prototype._recovered = function (outcome, presented) {
    var positions = outcome.positions || {};
    for (var group in positions) {
      if (positions[group]) this._keepPosition(group, positions[group]);
    }
    if (this.state === OPEN) return; // a first connection's outcome: positions only
    clearTimeout(this._timer);
    this._timer = null;
    var groups = {};
    var recovered = true;
    for (var name in presented) {
      groups[name] = !!(outcome.recovered || {})[name];
      recovered = recovered && groups[name];
    }
    var held = this._held || [];
    this._held = null;
    this._presented = null;
    this._opened(recovered, groups);
    for (var i = 0; i < held.length; i++) this._deliver(held[i][0], held[i][1], held[i][2]);
  };

  /* The positions this socket keeps, by group. */
  ChanliteSocket.prototype._positions = function () {
    if (!this._storage) return this._memoryPositions || {};
    try {
      return JSON.parse(this._storage.getItem("chanlite:positions:" + this.url) || "{}");
    } catch (error) {
      return {};
    }
  };

  ChanliteSocket.prototype._keepPosition = function (group, position) {
    var positions = this._positions();
    if (!isAfter(position, positions[group])) return;
    positions[group] = position;
    if (!this._storage) this._memoryPositions = positions;
    else this._storage.setItem("chanlite:positions:" + this.url, JSON.stringify(positions));
  };

  ChanliteSocket.prototype._clientId = function () {
    var id = this._storage ? this._storage.getItem("chanlite:client") : this._memoryClient;
    if (!id) {
      id = randomId();
      if (this._storage) this._storage.setItem("chanlite:client", id);
      else this._memoryClient = id;
    }
    return id;
  };

  ChanliteSocket.prototype._setState = function (state) {
    if (state === this.state) return;
    this.state = state;
    if (state === CLOSED) this._queue = [];
    this._onStateChange(state);
  };

  /* True if position `next` ("<epoch>:<offset>") comes after `current`: a later
   * offset in the same epoch, or any offset of another epoch (the old one is gone). */
  function isAfter(next, current) {
    if (!current) return true;
    var a = next.split(":");
    var b = current.split(":");
    return a[0] !== b[0] || Number(a[1]) > Number(b[1]);
  }

  function withParams(url, positions, clientId) {
    var resolved = new URL(url);
    if (Object.keys(positions).length) {
      resolved.searchParams.set("chanlite_positions", JSON.stringify(positions));
    }
    resolved.searchParams.set("chanlite_client", clientId);
    return resolved.href;
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join("");
  }

  function fromBase64(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function defaultStorage() {
    try {
      return typeof sessionStorage !== "undefined" ? sessionStorage : null;
    } catch (error) {
      return null; // storage refused (some privacy settings)
    }
  }

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
