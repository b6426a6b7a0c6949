// An independent OCPP charge point for the test suite: ocpp-rpc in strict mode, which
// validates every frame in both directions against the official JSON schemas.
//
//   node peer.js <endpoint> <identity> <password> <protocol>
//
// Driven over stdin / stdout, one JSON object a line:
//   in:  {"id": 1, "cmd": "call", "method": "BootNotification", "params": {...}}
//        {"id": 2, "cmd": "send", "method": "NotifyPeriodicEventStream", "params": {...}}
//        {"id": 3, "cmd": "close"}
//   out: {"id": 1, "result": {...}} | {"id": 1, "error": {"code": ..., "message": ...}}
//        {"event": "ready"}
//        {"event": "call", "method": "RequestStartTransaction", "params": {...}}
//        {"event": "violation", "outbound": bool, "method": ..., "message": ...}
//        {"event": "summary", "violations": n, "calls_in": n, "calls_out": n}
//
// Every call the station sends is answered "Accepted" (CostUpdated: an empty object).
// ocpp-rpc ships the 2.1 schemas with ids "urn:<Action>Request" / "urn:<Action>Response";
// its strict mode looks them up as "urn:<Action>.req" / ".conf", so they are renamed here.
"use strict";

const readline = require("readline");
const { randomUUID } = require("crypto");
const { RPCClient, createValidator } = require("ocpp-rpc");
const schemas21 = require("ocpp-rpc/lib/schemas/ocpp2_1.json");

const [endpoint, identity, password, protocol] = process.argv.slice(2);

function renamed21() {
  const schemas = schemas21.map((schema) => {
    const id = schema.$id;
    let renamedId = id;
    if (id.endsWith("Request")) renamedId = id.slice(0, -"Request".length) + ".req";
    else if (id.endsWith("Response")) renamedId = id.slice(0, -"Response".length) + ".conf";
    else renamedId = id + ".req"; // a SEND (NotifyPeriodicEventStream) has no answer
    return { ...schema, $id: renamedId };
  });
  return createValidator("ocpp2.1", schemas);
}

const validator21 = renamed21();
const client = new RPCClient({
  endpoint,
  identity,
  password,
  protocols: [protocol],
  strictMode: true,
  strictModeValidators: [validator21],
  reconnect: false,
  callTimeoutMs: 15000,
});

let violations = 0;
let callsIn = 0;
let callsOut = 0;

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

client.on("strictValidationFailure", (failure) => {
  violations += 1;
  out({
    event: "violation",
    outbound: failure.outbound,
    isCall: failure.isCall,
    method: failure.method,
    message: String(failure.error && failure.error.message),
    params: failure.params,
    result: failure.result,
  });
});

const STATION_CALLS = {
  "ocpp1.6": ["RemoteStartTransaction", "RemoteStopTransaction", "TriggerMessage"],
  "ocpp2.0.1": ["RequestStartTransaction", "RequestStopTransaction", "TriggerMessage",
    "CostUpdated"],
  "ocpp2.1": ["RequestStartTransaction", "RequestStopTransaction", "TriggerMessage",
    "CostUpdated"],
};
for (const method of STATION_CALLS[protocol]) {
  client.handle(method, ({ params }) => {
    callsIn += 1;
    out({ event: "call", method, params });
    return method === "CostUpdated" ? {} : { status: "Accepted" };
  });
}
client.handle(({ method }) => {
  out({ event: "unexpected_call", method });
  throw new Error(`unexpected call ${method}`);
});

function send(method, params) {
  // A 2.1 SEND: [6, id, action, payload], validated like an outgoing CALL, never answered.
  validator21.validate(`urn:${method}.req`, params);
  client.sendRaw(JSON.stringify([6, randomUUID(), method, params]));
}

async function handle(line) {
  const request = JSON.parse(line);
  try {
    if (request.cmd === "call") {
      callsOut += 1;
      out({ id: request.id, result: await client.call(request.method, request.params) });
    } else if (request.cmd === "send") {
      send(request.method, request.params);
      out({ id: request.id, result: null });
    } else if (request.cmd === "close") {
      await client.close({ code: 1000 });
      out({ event: "summary", violations, calls_in: callsIn, calls_out: callsOut });
      out({ id: request.id, result: null });
      process.exit(0);
    }
  } catch (error) {
    out({
      id: request.id,
      error: { code: error.rpcErrorCode || error.name, message: String(error.message) },
    });
  }
}

client.connect().then(
  () => {
    out({ event: "ready", protocol: client.protocol });
    readline.createInterface({ input: process.stdin }).on("line", handle);
  },
  (error) => {
    out({ event: "failed", message: String(error.message) });
    process.exit(3);
  },
);
