// Soak load for chanlite's soak run (python -m bench.soak drives it).
//
//   node soak.mjs '<JSON spec>'
//
// Opens `connections` sockets to `${url}room-${i % rooms}/`, holds them for
// `duration_s` while the first `chatters` sockets (one room after another) each send
// a message every `interval_s` (first one at a random offset, so sends are spread),
// then stops chatting, waits for the deliveries in flight and closes every socket,
// `close_rate` a second (0: all at once).
// A message is "<room seq> <sent at> <padding>"; every member of the room open when
// it was sent should receive it once.
//
// Progress and results are JSON lines on stdout:
//   {"event": "opened", ...}     every socket has opened or failed
//   {"event": "progress", ...}   at t = 0 (just opened), then every `report_s`, and
//                                once more ("phase": "drained") after the drain; the
//                                sockets close once a line arrives on stdin (or
//                                `release_timeout_s` has passed), so the server can
//                                be sampled with every socket still open
//   {"event": "result", ...}     the last line
// Errors go to stderr and exit with status 1. Times are seconds since the sockets
// opened; latencies in microseconds; CPU as a fraction of one core used by this
// process since the previous progress line.

import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { WebSocket } from "ws";
import { closeOne, connect, emit, sleep } from "./sockets.mjs";

const SPACE = 0x20;
const ZERO = 0x30;
// Latency histogram: 0.1 ms buckets up to 60 s, and one for anything later.
const BUCKET_MS = 0.1;
const BUCKETS = 600_000;


// -- latency -------------------------------------------------------------------------

/** Delivery latencies, in fixed buckets: constant memory however long the run. */
class Histogram {
  constructor() {
    this.counts = new Uint32Array(BUCKETS + 1);
    this.total = 0;
    this.maxMs = 0;
  }

  record(ms) {
    const bucket = Math.min(BUCKETS, Math.max(0, Math.floor(ms / BUCKET_MS)));
    this.counts[bucket] += 1;
    this.total += 1;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  /** The upper edge of the bucket holding the `q` quantile, in microseconds. */
  quantileMicros(q) {
    if (this.total === 0) return null;
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (let bucket = 0; bucket <= BUCKETS; bucket += 1) {
      seen += this.counts[bucket];
      if (seen >= rank) return (bucket + 1) * BUCKET_MS * 1000;
    }
    return this.maxMs * 1000;
  }

  summary() {
    return {
      samples: this.total,
      p50_us: this.quantileMicros(0.5),
      p99_us: this.quantileMicros(0.99),
      max_us: this.total ? this.maxMs * 1000 : null,
    };
  }

  reset() {
    this.counts.fill(0);
    this.total = 0;
    this.maxMs = 0;
  }
}

// -- rooms ---------------------------------------------------------------------------

/** The traffic of the whole run: counters and both latency histograms. */
class Traffic {
  constructor() {
    this.sent = 0;
    this.expected = 0;
    this.delivered = 0;
    this.unexpected = 0;
    this.closedByServer = 0;
    this.closeCodes = {};
    this.lastDelivery = performance.now();
    this.window = new Histogram();
    this.overall = new Histogram();
  }
}

/** One room: its open sockets and, per message sent, the deliveries still due. */
class Room {
  constructor(traffic) {
    this.traffic = traffic;
    this.open = 0;
    this.nextSeq = 0;
    this.pending = new Map(); // seq -> [deliveries still due, sent at]
  }

  join(ws) {
    this.open += 1;
    ws.on("message", (data) => this.receive(data));
    ws.once("close", (code) => {
      this.open -= 1;
      if (!ws.closingOnPurpose) {
        this.traffic.closedByServer += 1;
        this.traffic.closeCodes[code] = (this.traffic.closeCodes[code] || 0) + 1;
      }
    });
  }

  send(ws, padding) {
    if (ws.readyState !== WebSocket.OPEN || this.open === 0) return;
    const seq = this.nextSeq;
    this.nextSeq += 1;
    const now = performance.now();
    this.pending.set(seq, [this.open, now]);
    this.traffic.sent += 1;
    this.traffic.expected += this.open;
    ws.send(`${seq} ${now} ${padding}`);
  }

  receive(data) {
    let seq = 0;
    let index = 0;
    for (; index < data.length && data[index] !== SPACE; index += 1) seq = seq * 10 + data[index] - ZERO;
    const entry = this.pending.get(seq);
    const traffic = this.traffic;
    if (entry === undefined) {
      traffic.unexpected += 1; // a duplicate, or a delivery to a socket that was not counted
      return;
    }
    const now = performance.now();
    traffic.delivered += 1;
    traffic.lastDelivery = now;
    const end = data.indexOf(SPACE, index + 1);
    const latency = now - Number(data.toString("latin1", index + 1, end < 0 ? data.length : end));
    traffic.window.record(latency);
    traffic.overall.record(latency);
    entry[0] -= 1;
    if (entry[0] === 0) this.pending.delete(seq);
  }

  /** Deliveries still due, in all and of messages sent more than `ageMs` ago. */
  due(ageMs, now) {
    let all = 0;
    let overdue = 0;
    for (const [remaining, sentAt] of this.pending.values()) {
      all += remaining;
      if (now - sentAt > ageMs) overdue += remaining;
    }
    return { all, overdue };
  }
}

// -- connections ---------------------------------------------------------------------

/** Open socket i of `spec.connections` into room i % rooms, at most `concurrency`
 * handshakes in flight, source addresses round-robin over 127.0.0.1..N; no new
 * handshake starts after `open_timeout_s`. */
async function openAll(spec, rooms) {
  const sockets = new Array(spec.connections).fill(null);
  const errors = {};
  const start = performance.now();
  const deadline = start + spec.open_timeout_s * 1000;
  let next = 0;
  async function opener() {
    while (next < spec.connections && performance.now() < deadline) {
      const index = next;
      next += 1;
      const room = index % rooms.length;
      const address = `127.0.0.${1 + (index % spec.addresses)}`;
      try {
        const ws = await connect(`${spec.url}room-${room}/`, address);
        rooms[room].join(ws);
        sockets[index] = ws;
      } catch (error) {
        errors[error.message] = (errors[error.message] || 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(spec.concurrency, spec.connections) }, opener));
  const opened = sockets.filter((ws) => ws !== null).length;
  if (next < spec.connections) errors["not attempted: open_timeout_s passed"] = spec.connections - next;
  return {
    sockets,
    opened,
    failed: spec.connections - opened,
    errors,
    seconds: (performance.now() - start) / 1000,
  };
}

/** Close every socket, at most `rate` a second (0: all at once), and wait for the
 * close handshakes. */
async function closeAll(sockets, rate) {
  const start = performance.now();
  const closing = [];
  const batch = rate > 0 ? Math.max(1, Math.round(rate / 10)) : sockets.length;
  for (let index = 0; index < sockets.length; index += batch) {
    if (index > 0) await sleep(100);
    for (const ws of sockets.slice(index, index + batch)) closing.push(closeOne(ws));
  }
  await Promise.all(closing);
  return (performance.now() - start) / 1000;
}

// -- the run -------------------------------------------------------------------------

/** Start the timers of the first `chatters` open sockets; returns a function that
 * stops them all. */
function startChatting(spec, sockets, rooms) {
  const padding = "x".repeat(spec.payload_bytes);
  const timers = [];
  let chatters = 0;
  for (let index = 0; index < sockets.length && chatters < spec.chatters; index += 1) {
    const ws = sockets[index];
    if (ws === null) continue;
    chatters += 1;
    const room = rooms[index % rooms.length];
    const say = () => room.send(ws, padding);
    const first = setTimeout(() => {
      say();
      timers.push(setInterval(say, spec.interval_s * 1000));
    }, Math.random() * spec.interval_s * 1000);
    timers.push(first);
  }
  return () => {
    for (const timer of timers) {
      clearTimeout(timer);
      clearInterval(timer);
    }
  };
}

/** Reports progress: counters so far, and this window's latency and CPU. */
class Reporter {
  constructor(spec, traffic, rooms, start) {
    this.spec = spec;
    this.traffic = traffic;
    this.rooms = rooms;
    this.start = start;
    this.cpu = process.cpuUsage();
    this.windowStart = performance.now();
  }

  report(phase) {
    const now = performance.now();
    const traffic = this.traffic;
    const cpu = process.cpuUsage(this.cpu);
    const seconds = (now - this.windowStart) / 1000;
    let due = 0;
    let overdue = 0;
    let open = 0;
    for (const room of this.rooms) {
      const counts = room.due(this.spec.overdue_s * 1000, now);
      due += counts.all;
      overdue += counts.overdue;
      open += room.open;
    }
    emit({
      event: "progress",
      phase,
      t: (now - this.start) / 1000,
      open,
      sent: traffic.sent,
      expected: traffic.expected,
      delivered: traffic.delivered,
      due,
      overdue,
      unexpected: traffic.unexpected,
      closed_by_server: traffic.closedByServer,
      ...traffic.window.summary(),
      load_cpu: seconds >= 1 ? (cpu.user + cpu.system) / 1e6 / seconds : null,
      load_rss_kib: Math.round(process.memoryUsage.rss() / 1024),
    });
    traffic.window.reset();
    this.cpu = process.cpuUsage();
    this.windowStart = now;
  }
}

/** Resolve when a line arrives on stdin, or after `seconds`. */
function released(seconds) {
  const lines = createInterface({ input: process.stdin });
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      lines.close();
      resolve();
    };
    const timer = setTimeout(done, seconds * 1000);
    lines.once("line", done);
    lines.once("close", done);
  });
}

/** Wait until nothing is due, or nothing has arrived for `drain_s`; true if
 * deliveries were still due then. */
async function drain(spec, traffic, rooms) {
  traffic.lastDelivery = performance.now();
  for (;;) {
    const now = performance.now();
    const due = rooms.reduce((sum, room) => sum + room.due(0, now).all, 0);
    if (due === 0) return false;
    if (now - traffic.lastDelivery > spec.drain_s * 1000) return true;
    await sleep(50);
  }
}

async function soak(spec) {
  const traffic = new Traffic();
  const rooms = Array.from({ length: spec.rooms }, () => new Room(traffic));
  const opened = await openAll(spec, rooms);
  emit({ event: "opened", opened: opened.opened, failed: opened.failed, errors: opened.errors, seconds: opened.seconds });
  const start = performance.now();
  const reporter = new Reporter(spec, traffic, rooms, start);
  reporter.report("hold");
  const stopChatting = startChatting(spec, opened.sockets, rooms);
  const ticker = setInterval(() => reporter.report("hold"), spec.report_s * 1000);
  await sleep(spec.duration_s * 1000);
  clearInterval(ticker);
  stopChatting();
  const stalled = await drain(spec, traffic, rooms);
  reporter.report("drained");
  await released(spec.release_timeout_s);
  const stillOpen = rooms.reduce((sum, room) => sum + room.open, 0);
  const closeSeconds = await closeAll(opened.sockets, spec.close_rate);
  const now = performance.now();
  const lost = rooms.reduce((sum, room) => sum + room.due(0, now).all, 0);
  return {
    opened: opened.opened,
    failed: opened.failed,
    errors: opened.errors,
    open_seconds: opened.seconds,
    still_open: stillOpen,
    sent: traffic.sent,
    expected: traffic.expected,
    delivered: traffic.delivered,
    lost,
    unexpected: traffic.unexpected,
    stalled,
    closed_by_server: traffic.closedByServer,
    close_codes: traffic.closeCodes,
    close_seconds: closeSeconds,
    ...traffic.overall.summary(),
  };
}

soak(JSON.parse(process.argv[2] ?? "{}")).then(
  (result) => {
    emit({ event: "result", ...result });
    process.exit(0);
  },
  (error) => {
    process.stderr.write(`soak.mjs: ${error.stack || error}\n`);
    process.exit(1);
  },
);
