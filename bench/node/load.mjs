// WebSocket load generator for chanlite's ws-* benchmark suites.
//
//   node load.mjs '<JSON spec>'
//
// The spec's "scenario" picks one of: echo, fanout, connect, hold (see each function).
// Progress and results are JSON lines on stdout:
//   {"event": "mark", "name": "start" | "end"}   the timed window opens / closes
//   {"event": "holding", ...}                    (hold) sockets are open; send a line on
//                                                stdin to close them
//   {"event": "result", ...}                     the last line
// Errors go to stderr and exit with status 1. Latencies are in microseconds, rates per
// second, CPU as a fraction of one core used by this process in the timed window.

import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { WebSocket } from "ws";
import { addressPicker, CLOSE_TIMEOUT_MS, closeOne, connect, emit, sleep } from "./sockets.mjs";

const SPACE = 0x20;
const ZERO = 0x30;


// -- connections -------------------------------------------------------------------

/** Open `total` sockets with at most `concurrency` handshakes in flight. */
async function openMany(url, total, concurrency, addresses) {
  const pick = addressPicker(addresses);
  const sockets = [];
  const errors = {};
  let next = 0;
  const start = performance.now();
  async function opener() {
    while (next < total) {
      next += 1;
      try {
        sockets.push(await connect(url, pick()));
      } catch (error) {
        errors[error.message] = (errors[error.message] || 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, opener));
  const seconds = (performance.now() - start) / 1000;
  const failed = Object.values(errors).reduce((sum, n) => sum + n, 0);
  return { sockets, failed, errors, seconds };
}

/** Close every socket and wait for the close handshakes (terminating stragglers). */
async function closeAll(sockets) {
  const start = performance.now();
  await Promise.all(sockets.map(closeOne));
  return (performance.now() - start) / 1000;
}

// -- statistics --------------------------------------------------------------------

/** The `q` quantile (0..1) of `samples` (milliseconds), in microseconds. */
function quantileMicros(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 1000;
}

function latencySummary(samples) {
  const sorted = Float64Array.from(samples).sort();
  return {
    samples: sorted.length,
    p50_us: quantileMicros(sorted, 0.5),
    p99_us: quantileMicros(sorted, 0.99),
  };
}

/** Times a window: marks its start and end on stdout, measures this process's CPU. */
class Window {
  open() {
    emit({ event: "mark", name: "start" });
    this.cpu = process.cpuUsage();
    this.start = performance.now();
  }

  close() {
    this.seconds = (performance.now() - this.start) / 1000;
    const cpu = process.cpuUsage(this.cpu);
    emit({ event: "mark", name: "end" });
    this.loadCpu = (cpu.user + cpu.system) / 1e6 / this.seconds;
  }
}

function requireOpen(opened, total) {
  if (opened.failed > 0) {
    throw new Error(`${opened.failed} of ${total} sockets failed to open: ${JSON.stringify(opened.errors)}`);
  }
}

// -- echo --------------------------------------------------------------------------

/** Closed-loop echo: every client sends, waits for its echo, sends again. Counts the
 * echoes that arrive in the timed window and the round trip of each, and the sockets
 * the server closes meanwhile. */
async function echo(spec) {
  const opened = await openMany(spec.url, spec.clients, spec.concurrency, spec.addresses);
  requireOpen(opened, spec.clients);
  const payload = "x".repeat(spec.payload_bytes);
  const latencies = [];
  const closeCodes = {};
  let measuring = false;
  let stopping = false;
  let received = 0;
  let wrong = 0;
  let finished = 0;
  let allFinished;
  const drained = new Promise((resolve) => {
    allFinished = resolve;
  });
  for (const ws of opened.sockets) {
    let sentAt = performance.now();
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      finished += 1;
      if (finished === opened.sockets.length) allFinished();
    };
    ws.on("message", (data) => {
      const now = performance.now();
      if (data.length !== payload.length) wrong += 1;
      if (measuring) {
        received += 1;
        latencies.push(now - sentAt);
      }
      if (stopping) {
        finish();
        return;
      }
      sentAt = now;
      ws.send(payload);
    });
    ws.once("close", (code) => {
      closeCodes[code] = (closeCodes[code] || 0) + 1;
      finish();
    });
    ws.send(payload);
  }
  await sleep(spec.warmup * 1000);
  const window = new Window();
  measuring = true;
  window.open();
  await sleep(spec.duration * 1000);
  measuring = false;
  window.close();
  stopping = true;
  const stalled = await Promise.race([drained.then(() => false), sleep(CLOSE_TIMEOUT_MS).then(() => true)]);
  const closedByServer = Object.values(closeCodes).reduce((sum, n) => sum + n, 0);
  await closeAll(opened.sockets);
  return {
    messages: received,
    seconds: window.seconds,
    rate: received / window.seconds,
    ...latencySummary(latencies),
    wrong,
    stalled,
    closed_by_server: closedByServer,
    close_codes: closeCodes,
    load_cpu: window.loadCpu,
  };
}

// -- fan-out -----------------------------------------------------------------------

/** One room: `members` sockets, the first of which sends every broadcast. A broadcast
 * is "<seq> <sent at>" and is complete once every member has it. */
class Room {
  constructor(sockets, maxBroadcasts) {
    this.sockets = sockets;
    this.members = sockets.length;
    this.remaining = new Int32Array(maxBroadcasts);
    this.sent = 0;
    this.delivered = 0;
    this.completed = 0;
    this.lastProgress = performance.now();
    this.onDelivery = null;
    this.onComplete = null;
    for (const ws of sockets) ws.on("message", (data) => this.receive(data));
  }

  send() {
    const seq = this.sent;
    this.sent += 1;
    this.remaining[seq] = this.members;
    this.sockets[0].send(`${seq} ${performance.now()}`);
    return seq;
  }

  receive(data) {
    // "<seq> <sent at>": the sequence number is read straight from the bytes.
    let seq = 0;
    let index = 0;
    for (; index < data.length && data[index] !== SPACE; index += 1) seq = seq * 10 + data[index] - ZERO;
    this.delivered += 1;
    this.lastProgress = performance.now();
    if (this.onDelivery) this.onDelivery(seq, data, index);
    this.remaining[seq] -= 1;
    if (this.remaining[seq] === 0) {
      this.completed += 1;
      if (this.onComplete) this.onComplete(seq);
    }
  }

  get inFlight() {
    return this.sent - this.completed;
  }

  /** Wait until every broadcast sent so far is complete, or nothing arrives for
   * `stallSeconds`; true if it stalled. */
  async drain(stallSeconds) {
    while (this.inFlight > 0) {
      if (performance.now() - this.lastProgress > stallSeconds * 1000) return true;
      await sleep(5);
    }
    return false;
  }
}

/** Broadcasts at `pace` per second for `seconds`; latency of every delivery. */
async function paced(room, pace, seconds, stallSeconds) {
  const latencies = [];
  const first = room.sent;
  room.onDelivery = (seq, data, space) => {
    if (seq >= first) latencies.push(room.lastProgress - Number(data.toString("latin1", space + 1)));
  };
  const count = Math.max(1, Math.round(pace * seconds));
  const start = performance.now();
  for (let i = 0; i < count; i += 1) {
    const due = start + (i * 1000) / pace;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    room.send();
  }
  room.lastProgress = performance.now();
  const stalled = await room.drain(stallSeconds);
  room.onDelivery = null;
  return { broadcasts: count, lost: count * room.members - latencies.length, stalled, ...latencySummary(latencies) };
}

/** Keeps `window` broadcasts in flight (a new one as each completes); counts the
 * deliveries that arrive in the timed window. */
async function flood(room, spec) {
  let flooding = true;
  let counting = false;
  let counted = 0;
  const first = room.sent;
  const deliveredAtStart = room.delivered;
  const pump = () => {
    while (flooding && room.inFlight < spec.window) room.send();
  };
  room.onDelivery = () => {
    if (counting) counted += 1;
  };
  room.onComplete = pump;
  const watchdog = setInterval(() => {
    if (performance.now() - room.lastProgress > spec.stall_seconds * 1000) flooding = false;
  }, 50);
  room.lastProgress = performance.now();
  pump();
  await sleep(spec.warmup * 1000);
  const window = new Window();
  counting = true;
  window.open();
  await sleep(spec.duration * 1000);
  counting = false;
  window.close();
  const stalledDuring = !flooding;
  flooding = false;
  clearInterval(watchdog);
  const deliveredBefore = room.delivered;
  const stalled = (await room.drain(spec.stall_seconds)) || stalledDuring;
  room.onDelivery = null;
  room.onComplete = null;
  const broadcasts = room.sent - first;
  const expected = broadcasts * room.members;
  // The earlier phases have drained, so every delivery since the start is this phase's.
  const delivered = room.delivered - deliveredAtStart;
  return {
    broadcasts,
    deliveries: counted,
    seconds: window.seconds,
    rate: counted / window.seconds,
    lost: expected - delivered,
    after_window: room.delivered - deliveredBefore,
    stalled,
    load_cpu: window.loadCpu,
  };
}

/** A room of `members`: a probe (which also warms up), light-pace latency, then
 * (unless `flood` is false) deliveries per second at flood. */
async function fanout(spec) {
  const opened = await openMany(spec.url, spec.members, spec.concurrency, spec.addresses);
  requireOpen(opened, spec.members);
  const room = new Room(opened.sockets, 1 << 22);
  const probe = await paced(room, spec.pace, spec.probe_seconds, spec.stall_seconds);
  const light = await paced(room, spec.pace, spec.pace_seconds, spec.stall_seconds);
  const burst = spec.flood === false ? {} : await flood(room, spec);
  await closeAll(opened.sockets);
  return {
    members: room.members,
    probe_lost: probe.lost,
    light_broadcasts: light.broadcasts,
    light_lost: light.lost,
    light_stalled: light.stalled,
    p50_us: light.p50_us,
    p99_us: light.p99_us,
    flood_broadcasts: burst.broadcasts,
    flood_rate: burst.rate,
    flood_lost: burst.lost,
    flood_stalled: burst.stalled,
    flood_after_window: burst.after_window,
    seconds: burst.seconds,
    load_cpu: burst.load_cpu,
  };
}

// -- connections -------------------------------------------------------------------

/** Open `total` sockets as fast as `concurrency` handshakes in flight allow, then
 * close them all. */
async function connectMany(spec) {
  const window = new Window();
  window.open();
  const opened = await openMany(spec.url, spec.total, spec.concurrency, spec.addresses);
  window.close();
  const closeSeconds = await closeAll(opened.sockets);
  return {
    opened: opened.sockets.length,
    failed: opened.failed,
    errors: opened.errors,
    seconds: opened.seconds,
    rate: opened.sockets.length / opened.seconds,
    close_seconds: closeSeconds,
    load_cpu: window.loadCpu,
  };
}

/** Open `total` idle sockets, report, hold them until a line arrives on stdin. */
async function hold(spec) {
  const opened = await openMany(spec.url, spec.total, spec.concurrency, spec.addresses);
  emit({ event: "holding", opened: opened.sockets.length, failed: opened.failed, errors: opened.errors });
  const lines = createInterface({ input: process.stdin });
  await new Promise((resolve) => lines.once("line", resolve));
  lines.close();
  const stillOpen = opened.sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length;
  const closeSeconds = await closeAll(opened.sockets);
  return { opened: opened.sockets.length, failed: opened.failed, still_open: stillOpen, close_seconds: closeSeconds };
}

// -- main --------------------------------------------------------------------------

const SCENARIOS = { echo, fanout, connect: connectMany, hold };

async function main() {
  const spec = JSON.parse(process.argv[2] ?? "{}");
  const scenario = SCENARIOS[spec.scenario];
  if (!scenario) throw new Error(`unknown scenario ${spec.scenario}; known: ${Object.keys(SCENARIOS)}`);
  const result = await scenario(spec);
  emit({ event: "result", scenario: spec.scenario, ...result });
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`load.mjs: ${error.stack || error}\n`);
    process.exit(1);
  },
);
