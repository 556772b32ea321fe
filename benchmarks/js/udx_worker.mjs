// Benchmark worker: one udx-native socket (the npm package pinned in tests/interop/js),
// driven by benchmarks/run.py for the UDX workloads (udx_bulk, udx_round_trip,
// udx_streams, udx_lossy).
//
//   node benchmarks/js/udx_worker.mjs
//
// The worker binds one UDP socket on 127.0.0.1 and opens UDX streams on it with the
// ids and remote port the runner hands out (the other worker's port, or the lossy
// relay's). There is no handshake in UDX: both sides must open their streams before
// data flows, which the runner does.
//
// Protocol: JSON lines. Commands on stdin, one at a time, in order; events on stdout.
// The same protocol is spoken by benchmarks/udx_worker.py; see benchmarks/README.md.
//   {"cmd":"bind"}                                   -> {"event":"bound","port":N}
//   {"cmd":"open","streams":[[local,remote],...],"port":P,"mode":"data"|"echo"}
//                                                    -> {"event":"opened","count":K}
//       every stream: udx.createStream(local); stream.connect(socket, remote, P, host).
//       "echo": the stream writes back what it receives, in its 'data' handler.
//   {"cmd":"recv","ids":[...],"bytes":N,"check":bool}
//       -> {"event":"armed"} ... {"event":"received","streams","bytes","first_ns","last_ns","ok","bad"}
//       read every stream to its END; first_ns: the first byte on any stream, last_ns:
//       the last stream's END. Each must carry exactly N bytes of the pattern (ok).
//       After a stream's END, this side ends it too (the stream then closes).
//   {"cmd":"send","ids":[...],"bytes":N}             -> {"event":"sent","bytes","start_ns","end_ns"}
//       N bytes of the pattern on every stream at once (write, wait for 'drain'), then end().
//   {"cmd":"ping","id":L,"rounds":R,"warmup":W}      -> {"event":"pinged","rtt_ns":[...R]}
//       1-byte ping-pong on stream L (the other side echoes); each round timed here.
//   {"cmd":"stats","ids":[...]}                      -> {"event":"stats","streams":[{id,mtu,srtt_us,cwnd,...}]}
//       the streams' MTU, smoothed RTT, window and counters (retransmits, rto_count, ...)
//   {"cmd":"exit"}                                   -> exits 0
// Timestamps are process.hrtime.bigint() (CLOCK_MONOTONIC on Linux, the clock of
// Python's time.monotonic_ns()), sent as decimal strings.
// Errors: {"event":"error","message":str} then exit 1.
//
// The payload is a fixed pattern with a prime period (PERIOD bytes), byte i of a period
// being (i*131 + (i>>8)*7 + 17) & 0xff, the same in both workers.
//
// The plumbing around the commands (command loop, events, errors, shutdown) is
// benchmarks/js/worker_io.mjs, shared with benchmarks/js/worker.mjs.

import { createRequire } from 'node:module'
import { emit, fail, installFatalHandlers, isExiting, log, now, serve } from './worker_io.mjs'

const require = createRequire(new URL('../../tests/interop/js/package.json', import.meta.url))
const UDX = require('udx-native')

const HOST = '127.0.0.1'
const PERIOD = 65521

const PATTERN = Buffer.alloc(PERIOD)
for (let i = 0; i < PERIOD; i++) PATTERN[i] = (i * 131 + (i >> 8) * 7 + 17) & 0xff

installFatalHandlers('[js udx worker]')

if (process.argv.length > 2) throw new Error(`unknown argument ${process.argv[2]}`)

const udx = new UDX()
let socket = null
const streams = new Map() // local id -> stream

function patternMatches(buf, offset) {
  let pos = 0
  let off = offset % PERIOD
  while (pos < buf.byteLength) {
    const k = Math.min(buf.byteLength - pos, PERIOD - off)
    if (!buf.subarray(pos, pos + k).equals(PATTERN.subarray(off, off + k))) return false
    pos += k
    off = 0
  }
  return true
}

// resolves on 'drain', or on close/error (the caller then sees the stream destroyed)
function drained(stream) {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done)
      stream.off('close', done)
      resolve()
    }
    stream.on('drain', done)
    stream.on('close', done)
  })
}

async function sendAll(stream, size) {
  let sent = 0
  while (sent < size) {
    if (stream.destroyed) throw new Error(`stream ${stream.id} closed after ${sent} bytes`)
    const n = Math.min(PERIOD, size - sent)
    const ok = stream.write(n === PERIOD ? PATTERN : PATTERN.subarray(0, n))
    sent += n
    if (!ok) await drained(stream)
  }
  stream.end()
}

// The commands, by name ("exit" is serve()'s): each answers with its event(s).
const handlers = {
  async bind() {
    socket = udx.createSocket()
    socket.bind(0, HOST)
    emit({ event: 'bound', port: socket.address().port })
  },
  async open(cmd) {
    for (const [local, remote] of cmd.streams) {
      const stream = udx.createStream(local)
      stream.on('error', (err) => {
        if (!isExiting()) log(`stream ${local} error:`, err.message)
      })
      if (cmd.mode === 'echo') {
        stream.on('data', (buf) => stream.write(buf))
        stream.on('end', () => stream.end())
      }
      stream.connect(socket, remote, cmd.port, HOST)
      streams.set(local, stream)
    }
    emit({ event: 'opened', count: cmd.streams.length })
  },
  async recv(cmd) {
    const expected = cmd.bytes
    const check = cmd.check !== false
    let first = 0n
    let total = 0
    let pending = cmd.ids.length
    const bad = []
    const ended = []
    const finish = () => {
      if (--pending > 0) return
      const last = ended.length ? ended.reduce((a, b) => (a > b ? a : b)) : now()
      emit({ event: 'received', streams: cmd.ids.length, bytes: total, first_ns: first, last_ns: last, ok: bad.length === 0, bad: bad.slice(0, 10) })
    }
    for (const id of cmd.ids) {
      const stream = streams.get(id)
      let got = 0
      let ok = true
      let done = false
      stream.on('data', (buf) => {
        if (first === 0n) first = now()
        if (check && ok && !patternMatches(buf, got)) ok = false
        got += buf.byteLength
        total += buf.byteLength
      })
      stream.on('end', () => {
        if (done) return
        done = true
        ended.push(now())
        if (got !== expected) bad.push(`stream ${id}: ${got} bytes, expected ${expected}`)
        else if (!ok) bad.push(`stream ${id}: the bytes differ from the pattern`)
        stream.end()
        finish()
      })
      stream.on('close', () => {
        if (done) return
        done = true
        bad.push(`stream ${id}: closed before its END (${got} bytes)`)
        finish()
      })
    }
    emit({ event: 'armed' })
  },
  async send(cmd) {
    const start = now()
    await Promise.all(cmd.ids.map((id) => sendAll(streams.get(id), cmd.bytes)))
    emit({ event: 'sent', bytes: cmd.bytes * cmd.ids.length, start_ns: start, end_ns: now() })
  },
  async ping(cmd) {
    const stream = streams.get(cmd.id)
    const buf = Buffer.from('p')
    let pong = null
    stream.on('data', () => {
      const r = pong
      pong = null
      if (r !== null) r()
    })
    stream.on('close', () => {
      if (pong !== null) fail(new Error(`ping stream ${cmd.id} closed`))
    })
    const rtts = []
    for (let i = 0; i < cmd.warmup + cmd.rounds; i++) {
      const p = new Promise((resolve) => {
        pong = resolve
      })
      const t0 = now()
      stream.write(buf)
      await p
      if (i >= cmd.warmup) rtts.push(Number(now() - t0))
    }
    stream.end()
    emit({ event: 'pinged', rtt_ns: rtts })
  },
  async stats(cmd) {
    const ids = cmd.ids && cmd.ids.length ? cmd.ids : [...streams.keys()].slice(0, 1)
    const out = []
    for (const id of ids) {
      const s = streams.get(id)
      if (!s) continue
      out.push({ id, mtu: s.mtu, srtt_us: s.rtt * 1000, cwnd: s.cwnd, retransmits: s.retransmits, rto_count: s.rtoCount, fast_recoveries: s.fastRecoveries, packets_transmitted: s.packetsTransmitted })
    }
    emit({ event: 'stats', streams: out })
  },
}

// Destroys the streams and closes the socket (serve() then exits). socket.close() waits
// for every stream to close; one still retransmitting its END (its last ack lost, e.g.
// behind the lossy relay) would hold it for ~13 s: serve() exits after forceExitMs.
async function close() {
  for (const stream of streams.values()) stream.destroy()
  if (socket) await socket.close()
}

serve({ handlers, close, forceExitMs: 1000 })
