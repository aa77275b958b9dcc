#!/usr/bin/env node
// Perfetto's own trace processor (its WebAssembly build) on a trace file: prints the results
// of SQL queries as one JSON line. tests/trace_tools/trace_processor.py runs it; the assets
// come from scripts/fetch-trace-processor (Perfetto v55.3, Apache-2.0, as the npm registry has
// it).
//
// usage: TP_ASSETS=DIR node trace_processor.cjs TRACE 'SQL' ['SQL' ...]
//   DIR holds trace_processor.wasm and engine_bundle.node.js.
// stdout: {"init_ms","load_ms","query_ms","results":[{"sql","columns","rows","error"}]}
// exit: 0, 1 when a query failed, 3 when the trace could not be loaded, 2 on bad usage.
//
// The engine speaks TraceProcessorRpc (protos/perfetto/trace_processor/trace_processor.proto)
// over a byte stream; the few messages needed are encoded and decoded here, without
// dependencies. Requests are served synchronously inside the engine's onMessage.
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const { pathToFileURL } = require('url');

const ASSETS = process.env.TP_ASSETS;

// ---------------- minimal protobuf ----------------
function varint(n) {            // n: BigInt or number (>= 0, or negative int64)
  let v = BigInt.asUintN(64, BigInt(n));
  const out = [];
  do { let b = Number(v & 0x7fn); v >>= 7n; if (v) b |= 0x80; out.push(b); } while (v);
  return out;
}
function cat(parts) {
  let len = 0; for (const p of parts) len += p.length;
  const r = new Uint8Array(len); let o = 0;
  for (const p of parts) { r.set(p, o); o += p.length; }
  return r;
}
const tag = (f, wt) => Uint8Array.from(varint((f << 3) | wt));
const fVarint = (f, n) => cat([tag(f, 0), Uint8Array.from(varint(n))]);
const fBytes = (f, b) => cat([tag(f, 2), Uint8Array.from(varint(b.length)), b]);
const utf8 = (s) => new TextEncoder().encode(s);

class Reader {
  constructor(buf, s = 0, e = buf.length) { this.b = buf; this.p = s; this.e = e; }
  more() { return this.p < this.e; }
  varint() {
    let r = 0n, sh = 0n, b;
    do { b = this.b[this.p++]; r |= BigInt(b & 0x7f) << sh; sh += 7n; } while (b & 0x80);
    return r;
  }
  // returns [field, wiretype, value]; value: BigInt (0), Uint8Array (2), DataView slice (1/5)
  next() {
    const t = Number(this.varint()); const f = t >>> 3, wt = t & 7;
    if (wt === 0) return [f, wt, this.varint()];
    if (wt === 2) { const l = Number(this.varint()); const v = this.b.subarray(this.p, this.p + l); this.p += l; return [f, wt, v]; }
    if (wt === 1) { const v = this.b.subarray(this.p, this.p + 8); this.p += 8; return [f, wt, v]; }
    if (wt === 5) { const v = this.b.subarray(this.p, this.p + 4); this.p += 4; return [f, wt, v]; }
    throw new Error('bad wiretype ' + wt);
  }
}
const dec = new TextDecoder();

// ---------------- RPC messages ----------------
const TPM_APPEND_TRACE_DATA = 1, TPM_FINALIZE_TRACE_DATA = 2, TPM_QUERY_STREAMING = 3;
let txSeq = 0;
function rpc(method, argField, argBytes) {
  const parts = [fVarint(1, txSeq++), fVarint(2, method)];
  if (argField) parts.push(fBytes(argField, argBytes));
  return fBytes(1, cat(parts));  // framed as TraceProcessorRpcStream.msg
}

// Decode the response byte stream into TraceProcessorRpc objects.
class RxStream {
  constructor() { this.buf = new Uint8Array(0); this.msgs = []; }
  push(chunk) {
    this.buf = cat([this.buf, chunk]);
    for (;;) {
      const r = new Reader(this.buf);
      if (!this.buf.length) return;
      try {
        const t = Number(r.varint()); const l = Number(r.varint());
        if (t !== 10) throw new Error('RPC framing error, tag ' + t);
        if (r.p + l > this.buf.length) return;   // incomplete
        this.msgs.push(decodeRpc(this.buf.subarray(r.p, r.p + l)));
        this.buf = this.buf.slice(r.p + l);
      } catch (e) { if (e instanceof RangeError) return; throw e; }
    }
  }
}
function decodeRpc(b) {
  const m = {}; const r = new Reader(b);
  while (r.more()) {
    const [f, , v] = r.next();
    if (f === 3) m.response = Number(v);
    else if (f === 4) m.invalid_request = Number(v);
    else if (f === 5) m.fatal_error = dec.decode(v);
    else if (f === 201) m.append_result = decodeAppend(v);
    else if (f === 203) m.query_result = decodeQueryResult(v);
  }
  return m;
}
function decodeAppend(b) {
  const m = {}; const r = new Reader(b);
  while (r.more()) { const [f, , v] = r.next(); if (f === 1) m.total_bytes_parsed = Number(v); if (f === 2) m.error = dec.decode(v); }
  return m;
}
function packedVarints(v, wt) {
  if (wt === 0) return [v];
  const r = new Reader(v); const out = []; while (r.more()) out.push(r.varint()); return out;
}
function decodeQueryResult(b) {
  const m = { column_names: [], error: null, batches: [] }; const r = new Reader(b);
  while (r.more()) {
    const [f, wt, v] = r.next();
    if (f === 1) m.column_names.push(dec.decode(v));
    else if (f === 2) m.error = dec.decode(v);
    else if (f === 3) {
      const bt = { cells: [], varints: [], doubles: [], blobs: [], strings: [], last: false };
      const br = new Reader(v);
      while (br.more()) {
        const [bf, bwt, bv] = br.next();
        if (bf === 1) bt.cells.push(...packedVarints(bv, bwt).map(Number));
        else if (bf === 2) bt.varints.push(...packedVarints(bv, bwt).map((x) => BigInt.asIntN(64, x)));
        else if (bf === 3) { const dv = new DataView(bv.buffer, bv.byteOffset, bv.byteLength); for (let i = 0; i < bv.byteLength; i += 8) bt.doubles.push(dv.getFloat64(i, true)); }
        else if (bf === 4) bt.blobs.push(bv);
        else if (bf === 5) { const s = dec.decode(bv); bt.strings.push(...s.split('\0').slice(0, -1)); }
        else if (bf === 6) bt.last = Boolean(bv);
      }
      m.batches.push(bt);
    }
  }
  return m;
}

// ---------------- engine bootstrap ----------------
async function createEngine() {
  Object.defineProperty(globalThis, 'self', { value: globalThis, writable: true, configurable: true });
  globalThis.WorkerGlobalScope = function WorkerGlobalScope() {};
  Object.defineProperty(globalThis, 'location', { value: { href: pathToFileURL(ASSETS).href + '/' }, writable: true, configurable: true });
  globalThis.__TP_WASM_BYTES = new Uint8Array(fs.readFileSync(path.join(ASSETS, 'trace_processor.wasm')));
  let src = fs.readFileSync(path.join(ASSETS, 'engine_bundle.node.js'), 'utf8');
  const edits = [
    ['this.useMemory64 = hasMemory64Support();', 'this.useMemory64 = false;'],
    ['locateFile: (s) => s,', 'locateFile: (s) => s, wasmBinary: globalThis.__TP_WASM_BYTES,'],
    ['const wasmBridge = new wasm_bridge_1.WasmBridge();', 'const wasmBridge = new wasm_bridge_1.WasmBridge(); globalThis.__TP_bridge = wasmBridge;'],
  ];
  for (const [a, b] of edits) {
    if (!src.includes(a)) throw new Error('glue patch anchor not found: ' + a);
    src = src.replace(a, b);
  }
  const origLog = console.log;
  console.log = (...a) => process.stderr.write(a.join(' ') + '\n');  // keep stdout JSON-only
  vm.runInThisContext(src, { filename: 'engine_bundle.node.js' });
  const bridge = globalThis.__TP_bridge;
  // wait until onRuntimeInitialized -> trace_processor_rpc_init has run
  for (let i = 0; bridge.reqBufferAddr === 0; i++) {
    if (i > 6000) throw new Error('wasm init timeout');
    await new Promise((r) => setTimeout(r, 5));
  }
  const rx = new RxStream();
  // Drive the bridge synchronously: each request is fully processed inside
  // ccall(trace_processor_on_rpc_request), which calls onReply -> postMessage.
  bridge.messagePort = { postMessage: (data) => rx.push(data) };
  function call(bytes) {
    rx.msgs = [];
    bridge.onMessage({ data: bytes });
    for (const m of rx.msgs) if (m.fatal_error) throw new Error('TP fatal: ' + m.fatal_error);
    return rx.msgs;
  }
  return {
    load(buf) {
      const CHUNK = 32 * 1024 * 1024;  // RPC frame cap is 64 MiB
      for (let o = 0; o < buf.length; o += CHUNK) {
        for (const m of call(rpc(TPM_APPEND_TRACE_DATA, 101, buf.subarray(o, o + CHUNK))))
          if (m.append_result && m.append_result.error) throw new Error('parse error: ' + m.append_result.error);
      }
      call(rpc(TPM_FINALIZE_TRACE_DATA));
    },
    query(sql) {
      const msgs = call(rpc(TPM_QUERY_STREAMING, 103, fBytes(1, utf8(sql))));
      const out = { sql, columns: [], rows: [], error: null };
      const cells = [];
      for (const m of msgs) {
        const q = m.query_result; if (!q) continue;
        if (q.column_names.length) out.columns = q.column_names;
        if (q.error) out.error = q.error;
        for (const bt of q.batches) {
          let vi = 0, di = 0, si = 0, bi = 0;
          for (const c of bt.cells) {
            if (c === 1) cells.push(null);
            else if (c === 2) cells.push(bt.varints[vi++]);  // BigInt: written exactly
            else if (c === 3) cells.push(bt.doubles[di++]);
            else if (c === 4) cells.push(bt.strings[si++]);
            else if (c === 5) cells.push(Buffer.from(bt.blobs[bi++]).toString('base64'));
            else throw new Error('bad cell type ' + c);
          }
        }
      }
      const n = out.columns.length;
      for (let i = 0; n && i < cells.length; i += n) out.rows.push(cells.slice(i, i + n));
      return out;
    },
  };
}

async function main() {
  const [trace, ...sqls] = process.argv.slice(2);
  if (!trace || !ASSETS) {
    process.stderr.write('usage: TP_ASSETS=DIR trace_processor.cjs TRACE SQL...\n');
    process.exit(2);
  }
  const t0 = process.hrtime.bigint();
  const tp = await createEngine();
  const t1 = process.hrtime.bigint();
  tp.load(new Uint8Array(fs.readFileSync(trace)));
  const t2 = process.hrtime.bigint();
  const results = sqls.map((s) => tp.query(s));
  const t3 = process.hrtime.bigint();
  const ms = (a, b) => Number(b - a) / 1e6;
  // integers as exact JSON numbers: 64-bit timestamps do not fit a double
  const text = JSON.stringify({ init_ms: ms(t0, t1), load_ms: ms(t1, t2), query_ms: ms(t2, t3), results },
    (k, v) => (typeof v === 'bigint' ? `\u0000int:${v}` : v));
  process.stdout.write(text.replace(/"\\u0000int:(-?\d+)"/g, '$1') + '\n');
  process.exit(results.some((r) => r.error) ? 1 : 0);
}
main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(3); });
