// A WebSocket, timers and randomness that the tests of chanlite.js drive by hand, so
// that every reconnect, delay and state change happens exactly when a test says.
"use strict";

window.sockets = [];
window.timers = [];
window.changes = [];
window.received = [];
window.opens = [];
window.nextRandom = 0.5;

class FakeWebSocket {
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    sockets.push(this);
  }
  send(data) {
    if (this.readyState !== 1) throw new Error("FakeWebSocket.send while not open");
    this.sent.push(data);
  }
  close(code, reason) {
    this.closedWith = [code, reason];
    this.readyState = 2;
  }
  // What the server and the network do:
  serverOpens(protocol = "") {
    this.protocol = protocol;
    this.readyState = 1;
    if (this.onopen) this.onopen({});
  }
  serverSends(data) {
    if (this.onmessage) this.onmessage({ data });
  }
  connectionCloses(code) {
    this.readyState = 3;
    if (this.onclose) this.onclose({ code });
  }
}

window.WebSocket = FakeWebSocket;
window.setTimeout = (callback, delay) => timers.push({ callback, delay, state: "pending" });
window.clearTimeout = (id) => {
  if (id && timers[id - 1].state === "pending") timers[id - 1].state = "cleared";
};
window.realRandom = Math.random;
Math.random = () => nextRandom;

window.pendingDelays = () => timers.filter((t) => t.state === "pending").map((t) => t.delay);
window.fireTimer = () => {
  const timer = timers.find((t) => t.state === "pending");
  timer.state = "fired";
  timer.callback();
};
// A real WebSocket never opens in the task that made it: let microtasks run first.
window.tick = () => Promise.resolve();
window.lastSocket = () => sockets[sockets.length - 1];
// The query parameters of the last socket's URL, and its URL without them.
window.lastParams = () => Object.fromEntries(new URL(lastSocket().url).searchParams);
window.lastBase = () => lastSocket().url.split("?")[0];
window.makeSocket = (url, options) =>
  new ChanliteSocket(url, {
    onStateChange: (state) => changes.push(state),
    onMessage: (data, group) => received.push(group === undefined ? data : [group, data]),
    onOpen: (info) => opens.push(info),
    storage: null,
    ...options,
  });
// A chanlite.v1 socket that heard message 1 of chat-a, lost its connection, and
// reopens: the state every recovery test starts from (the socket is returned).
window.reopenedAfterOne = async (url) => {
  const socket = makeSocket(url);
  await tick();
  lastSocket().serverOpens("chanlite.v1");
  lastSocket().serverSends(JSON.stringify({ g: "chat-a", p: "e1:1", text: "one" }));
  lastSocket().connectionCloses(1006);
  fireTimer();
  lastSocket().serverOpens("chanlite.v1");
  return socket;
};
