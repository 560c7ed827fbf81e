// What the load generators (load.mjs, soak.mjs) share: output, opening and closing
// sockets, and where client connections come from.

import { WebSocket } from "ws";

export const CONNECT_TIMEOUT_MS = 30_000;
export const CLOSE_TIMEOUT_MS = 15_000;

/** Write one JSON event line on stdout. */
export const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Round-robins client source addresses over 127.0.0.0/8, so that many thousands of
 * sockets to one server port never run short of ephemeral ports. */
export function addressPicker(count) {
  let next = 0;
  return () => `127.0.0.${1 + (next++ % count)}`;
}

/** One socket, resolved once open; rejected if it fails or closes first. */
export function connect(url, localAddress) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: CONNECT_TIMEOUT_MS,
      localAddress,
    });
    const fail = (reason) => {
      ws.removeAllListeners();
      ws.on("error", () => {});
      ws.terminate();
      reject(new Error(reason));
    };
    ws.once("open", () => {
      ws.removeAllListeners();
      ws.on("error", () => {});
      resolve(ws);
    });
    ws.once("error", (error) => fail(String(error.message || error)));
    ws.once("unexpected-response", (_request, response) => fail(`HTTP ${response.statusCode}`));
    ws.once("close", (code) => fail(`closed ${code} before open`));
  });
}

/** Close one socket (null: nothing to close); resolves once it has closed, or been
 * terminated after CLOSE_TIMEOUT_MS. */
export function closeOne(ws) {
  return new Promise((resolve) => {
    if (ws === null || ws.readyState === WebSocket.CLOSED) {
      resolve();
      return;
    }
    ws.closingOnPurpose = true;
    const timer = setTimeout(() => {
      ws.terminate();
      resolve();
    }, CLOSE_TIMEOUT_MS);
    ws.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
    ws.close(1000);
  });
}
