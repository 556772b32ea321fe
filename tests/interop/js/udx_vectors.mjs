// Known-answer UDX packets captured from the real udx-native (libudx) on 127.0.0.1.
//
//   node tests/interop/js/udx_vectors.mjs > tests/vectors/udx.json
//   node tests/interop/js/udx_vectors.mjs --observed   # adds run-dependent details (not for the vectors file)
//
// Recipe of /work/shared/dht/UDX.md section 6.3: one UDX instance; for each
// case two udx sockets A and B on 127.0.0.1 port 0 and two plain dgram sockets
// PA and PB in between (A talks to PA, B to PB) that log every datagram and
// can drop chosen ones. Stream ids are fixed: A = 0x11223344, B = 0x55667788.
// A is connected to PA; B has a firewall that connects it to the packet's
// source (PB) on its first packet and returns false (hyperdht style). The
// hand-crafted cases replace A by a plain dgram socket that writes headers
// itself, with B connected directly to it.
//
// Every case is driven step by step (each action waits for the packet it
// causes), so the recorded order is fixed. Where timing still changes packets
// (the bulk-transfer cases), a case records a canonical, deterministic
// selection and says so in its "order" field. Every case checks what it
// captured; a failed check (for instance a tail-loss-probe retransmission
// because an ack was late) discards the attempt and runs the case again, up to
// 3 times. So the output is byte-identical from run to run (stdout only;
// progress goes to stderr). The script exits non-zero if a case fails 3 times,
// and a 30 s watchdog bounds the run. All sockets are closed at the end.

import { createRequire } from 'node:module'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import dgram from 'node:dgram'
import path from 'node:path'

const require = createRequire(import.meta.url)
const HERE = path.dirname(fileURLToPath(import.meta.url))
const NM = path.join(HERE, 'node_modules')

const UDX = require('udx-native')

const PACKAGES = ['udx-native', 'streamx', 'b4a']

const HOST = '127.0.0.1'
const ID_A = 0x11223344
const ID_B = 0x55667788
const RWND = 4194304
const HEADER = 20
const QUIET_MS = 200 // "nothing came" means nothing within this long
const STEP_TIMEOUT_MS = 5000
const WATCHDOG_MS = 30000

const TYPE_NAMES = [
  [0x01, 'DATA'],
  [0x02, 'END'],
  [0x04, 'SACK'],
  [0x08, 'MESSAGE'],
  [0x10, 'DESTROY'],
  [0x20, 'HEARTBEAT']
]

const udx = new UDX()

// ---------------------------------------------------------------- helpers

const sha256 = (b) => createHash('sha256').update(b).digest('hex')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const hexId = (n) => '0x' + n.toString(16).padStart(8, '0')

// the deterministic payload pattern used by all interop peers: byte i = (seed + i) % 251
function pattern(size, seed = 0) {
  const b = Buffer.alloc(size)
  for (let i = 0; i < size; i++) b[i] = (seed + i) % 251
  return b
}

function log(...args) {
  console.error('[udx_vectors]', ...args)
}

function check(ok, what) {
  if (!ok) throw new Error('self-check failed: ' + what)
}

function packages() {
  const out = {}
  for (const name of PACKAGES) {
    const pkg = JSON.parse(readFileSync(path.join(NM, name, 'package.json'), 'utf8'))
    out[name] = pkg.version
  }
  return out
}

function flagNames(type) {
  if (type === 0) return ['STATE']
  const names = TYPE_NAMES.filter(([bit]) => type & bit).map(([, name]) => name)
  if (type & ~0x3f) names.push('0x' + (type & ~0x3f).toString(16))
  return names
}

function parse(buf) {
  if (buf.length < HEADER || buf[0] !== 0xff || buf[1] !== 0x01) return null
  return {
    type: buf[2],
    data_offset: buf[3],
    id: buf.readUInt32LE(4),
    rwnd: buf.readUInt32LE(8),
    seq: buf.readUInt32LE(12),
    ack: buf.readUInt32LE(16)
  }
}

// One datagram as it goes into the JSON.
//   payload_len: bytes after the header and data_offset (for SACK packets, which
//   libudx sends with data_offset 0, those bytes are the blocks, decoded in "sack").
//   Datagrams whose payload_len > 64 keep only header + data_offset bytes + the
//   first 16 payload bytes in "hex" ("truncated": true) plus "payload_sha256".
function entry(dir, buf, extra = {}) {
  const h = parse(buf)
  check(h !== null, `${dir} datagram is UDX: ${buf.toString('hex')}`)
  const bodyLen = buf.length - HEADER
  const payloadLen = bodyLen - h.data_offset
  const e = { dir, hex: buf.toString('hex') }
  Object.assign(e, h)
  e.payload_len = payloadLen >= 0 ? payloadLen : null
  e.len = buf.length
  e.flags = flagNames(h.type)
  if (h.type & 0x04) {
    const area = h.data_offset > 0 && h.data_offset < bodyLen ? h.data_offset : bodyLen
    const blocks = []
    for (let off = HEADER; off + 8 <= HEADER + area; off += 8) blocks.push([buf.readUInt32LE(off), buf.readUInt32LE(off + 4)])
    e.sack = blocks
  }
  if (payloadLen > 64) {
    e.hex = buf.subarray(0, HEADER + h.data_offset + 16).toString('hex')
    e.truncated = true
    e.payload_sha256 = sha256(buf.subarray(HEADER + h.data_offset))
  }
  return Object.assign(e, extra)
}

// Build a header (+ body) the way a hand-written peer would.
function craft(type, { dataOffset = 0, id = ID_B, rwnd = RWND, seq = 0, ack = 0 } = {}, body = Buffer.alloc(0)) {
  const buf = Buffer.alloc(HEADER + body.length)
  buf[0] = 0xff
  buf[1] = 0x01
  buf[2] = type
  buf[3] = dataOffset
  buf.writeUInt32LE(id, 4)
  buf.writeUInt32LE(rwnd, 8)
  buf.writeUInt32LE(seq >>> 0, 12)
  buf.writeUInt32LE(ack >>> 0, 16)
  body.copy(buf, HEADER)
  return buf
}

// ---------------------------------------------------------------- capture

class Capture {
  constructor() {
    this.packets = [] // { dir, buf, dropped, n } in capture order
    this.waiters = []
    this.drop = null // (dir, header, buf) => bool
  }

  add(dir, buf) {
    const h = parse(buf)
    const p = { dir, buf: Buffer.from(buf), h, dropped: false, index: this.packets.length }
    if (this.drop && h && this.drop(dir, h, buf)) p.dropped = true
    this.packets.push(p)
    for (const w of this.waiters.slice()) {
      if (w.pred(p)) {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        clearTimeout(w.timer)
        w.resolve(p)
      }
    }
    return p
  }

  // resolves with the first packet at index >= from matching pred (already captured or future)
  waitFor(what, pred, from = 0) {
    for (let i = from; i < this.packets.length; i++) if (pred(this.packets[i])) return Promise.resolve(this.packets[i])
    return new Promise((resolve, reject) => {
      const w = {
        pred: (p) => p.index >= from && pred(p),
        resolve,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(w), 1)
          reject(new Error('timed out waiting for ' + what))
        }, STEP_TIMEOUT_MS)
      }
      this.waiters.push(w)
    })
  }

  entries(from = 0, to = this.packets.length) {
    return this.packets.slice(from, to).map((p) => entry(p.dir, p.buf, p.dropped ? { dropped: true } : {}))
  }
}

const isType = (dir, type) => (p) => p.dir === dir && p.h !== null && p.h.type === type
const isAck = (dir, ack) => (p) => p.dir === dir && p.h !== null && (p.h.type === 0x00 || p.h.type === 0x04) && p.h.ack === ack

function bindDgram() {
  const s = dgram.createSocket('udp4')
  return new Promise((resolve, reject) => {
    s.once('error', reject)
    s.bind(0, HOST, () => {
      s.removeListener('error', reject)
      resolve(s)
    })
  })
}

function closeDgram(s) {
  return new Promise((resolve) => s.close(resolve))
}

// per-stream event log and a close promise, attached before anything happens
function watch(stream, name) {
  const events = []
  const received = []
  stream.on('data', (d) => {
    received.push(Buffer.from(d))
    events.push(['data', d.toString('hex')])
  })
  stream.on('end', () => events.push(['end']))
  stream.on('message', (m) => events.push(['message', Buffer.from(m).toString('hex')]))
  stream.on('error', (err) => events.push(['error', err.code || err.message]))
  const closed = new Promise((resolve) => stream.once('close', () => {
    events.push(['close'])
    resolve()
  }))
  return {
    name,
    stream,
    events,
    closed,
    bytes: () => Buffer.concat(received),
    count: () => received.reduce((n, b) => n + b.length, 0)
  }
}

// Wait until cond() holds, checked whenever an event may have changed it (polls every 2 ms).
async function until(what, cond) {
  const deadline = Date.now() + STEP_TIMEOUT_MS
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what)
    await sleep(2)
  }
}

// Two udx-native streams joined through the logging proxies PA and PB.
// rwndToA: if set, PB rewrites the rwnd field of B's packets to this value before
// forwarding them to A (the log keeps what B sent), to keep A's flight small
// enough that the proxy's socket buffer does not overflow.
async function proxiedPair({ seqA = 0, ackB = 0, rwndToA = 0 } = {}) {
  const sa = udx.createSocket()
  sa.bind(0, HOST)
  const sb = udx.createSocket()
  sb.bind(0, HOST)
  const pa = await bindDgram()
  const pb = await bindDgram()
  const cap = new Capture()
  const socketMessages = { a: [], b: [] }
  sa.on('message', (m) => socketMessages.a.push(Buffer.from(m).toString('hex')))
  sb.on('message', (m) => socketMessages.b.push(Buffer.from(m).toString('hex')))
  let forwarding = true

  pa.on('message', (msg) => {
    const p = cap.add('A->B', msg)
    if (forwarding && !p.dropped) pb.send(msg, sb.address().port, HOST)
  })
  pb.on('message', (msg) => {
    const p = cap.add('B->A', msg)
    if (rwndToA && p.h !== null) {
      msg = Buffer.from(msg)
      msg.writeUInt32LE(rwndToA, 8)
    }
    if (forwarding && !p.dropped) pa.send(msg, sa.address().port, HOST)
  })

  const a = udx.createStream(ID_A, seqA ? { seq: seqA } : {})
  const b = udx.createStream(ID_B, {
    firewall(socket, port, host) {
      // (not a check(): this runs inside a native callback) anything else is dropped and the case times out
      if (socket !== sb || port !== pb.address().port || host !== HOST) return true
      b.connect(socket, ID_A, port, host, ackB ? { ack: ackB } : {})
      return false
    }
  })
  const wa = watch(a, 'A')
  const wb = watch(b, 'B')
  a.connect(sa, ID_B, pa.address().port, HOST)

  async function close() {
    forwarding = false
    cap.drop = () => true
    for (const w of [wa, wb]) if (!w.stream.destroyed) w.stream.destroy()
    await Promise.all([wa.closed, wb.closed])
    await Promise.all([sa.close(), sb.close(), closeDgram(pa), closeDgram(pb)])
  }

  return { a, b, wa, wb, cap, socketMessages, close }
}

// A udx-native stream B talking to a hand-written peer A (plain dgram socket).
// B is connected directly to A's port with remote id ID_A; A's local id is ID_A.
async function craftedPeer() {
  const sb = udx.createSocket()
  sb.bind(0, HOST)
  const c = await bindDgram()
  const cap = new Capture()
  const socketMessages = []
  sb.on('message', (m) => socketMessages.push(Buffer.from(m).toString('hex')))
  c.on('message', (msg) => cap.add('B->A', msg))
  const b = udx.createStream(ID_B)
  const wb = watch(b, 'B')
  b.connect(sb, ID_A, c.address().port, HOST)

  function send(buf) {
    const p = cap.add('A->B', buf)
    c.send(buf, sb.address().port, HOST)
    return p
  }

  // send, then wait for the answer matching pred, or QUIET_MS of nothing
  async function exchange(buf, pred = null) {
    const p = send(buf)
    if (pred) return cap.waitFor('answer to crafted ' + buf.toString('hex'), pred, p.index + 1)
    await sleep(QUIET_MS)
    return null
  }

  async function close() {
    if (!b.destroyed) b.destroy()
    await wb.closed
    await Promise.all([sb.close(), closeDgram(c)])
  }

  return { b, wb, cap, send, exchange, socketMessages, close }
}

// the events so far (teardown events after the case are left out)
function snapshot(w) {
  return w.events.map((e) => e.slice())
}

// ---------------------------------------------------------------- cases
//
// Each case returns its JSON object. check() failures inside a case mean the
// run was disturbed by timing (a tail-loss probe retransmitted a packet whose
// ack was late, a probe search stopped early, ...): runCase() then tears the
// case down and runs it again, up to ATTEMPTS times. A recorded case is always
// an attempt that passed every check.

const ATTEMPTS = 3

// [dir, type, seq, ack] of every recorded datagram, in order
function checkShape(name, datagrams, shape) {
  const got = datagrams.map((d) => [d.dir, d.type, d.seq, d.ack])
  check(JSON.stringify(got) === JSON.stringify(shape), `${name}: datagrams ${JSON.stringify(got)} are ${JSON.stringify(shape)}`)
}

const hasError = (w) => w.events.some((e) => e[0] === 'error')

async function openDataEnd(obs) {
  const pair = await proxiedPair()
  const { a, b, wa, wb, cap, socketMessages } = pair
  try {
    b.on('data', () => {
      b.write('world')
      b.end()
    })
    a.on('data', () => a.end())
    a.write('hello')
    await Promise.all([wa.closed, wb.closed])
    await sleep(QUIET_MS) // trailing packets, if any
    check(wb.bytes().toString() === 'hello' && wa.bytes().toString() === 'world', 'open_data_end payloads')
    check(!hasError(wa) && !hasError(wb), 'open_data_end: no errors')
    const datagrams = cap.entries()
    checkShape('open_data_end', datagrams, [
      ['A->B', 0x01, 0, 0],
      ['B->A', 0x03, 0, 1],
      ['B->A', 0x00, 1, 1],
      ['A->B', 0x02, 1, 1],
      ['A->B', 0x00, 2, 1],
      ['B->A', 0x00, 1, 2]
    ])
    // B closed on A's END (datagram 4), so A's STATE (datagram 5) found no stream
    check(socketMessages.a.length === 0 && JSON.stringify(socketMessages.b) === JSON.stringify([datagrams[4].hex]), 'open_data_end: late STATE went to B\'s socket')
    return {
      name: 'open_data_end',
      what:
        'A writes "hello" (the first packet: B\'s firewall connects B to its source); B\'s data handler writes "world" and ends; ' +
        'A\'s data handler ends. B closes as soon as it has sent the STATE acking A\'s END (both sides ended), so A\'s STATE ' +
        '(datagram 5) reaches B\'s socket after B closed and goes to the socket "message" handler; A closes on the last STATE. ' +
        'No errors (UDX.md 6.1).',
      order: 'capture',
      datagrams,
      events: { A: snapshot(wa), B: snapshot(wb) },
      socket_messages: {
        note: 'datagrams that reached the udx socket "message" handler (no live stream for their id, UDX.md 1.7), hex',
        A: socketMessages.a.slice(),
        B: socketMessages.b.slice()
      }
    }
  } finally {
    await pair.close()
  }
}

async function message(obs) {
  const pair = await proxiedPair()
  const { a, b, wa, wb, cap } = pair
  try {
    b.on('message', (m) => {
      if (Buffer.from(m).toString() === 'ping') b.trySend(Buffer.from('pong'))
    })
    await a.send(Buffer.from('ping'))
    await cap.waitFor('pong', isType('B->A', 0x08))
    await a.send(Buffer.alloc(0))
    await until('B got the empty message', () => wb.events.filter((e) => e[0] === 'message').length === 2)
    await sleep(QUIET_MS)
    const datagrams = cap.entries()
    checkShape('message', datagrams, [
      ['A->B', 0x08, 0, 0],
      ['B->A', 0x08, 0, 0],
      ['A->B', 0x08, 0, 0]
    ])
    check(JSON.stringify(wa.events) === JSON.stringify([['message', '706f6e67']]), 'message: A got pong')
    check(JSON.stringify(wb.events) === JSON.stringify([['message', '70696e67'], ['message', '']]), 'message: B got ping and an empty message')
    return {
      name: 'message',
      what:
        'A stream.send("ping") (a MESSAGE; it is B\'s first packet, so B\'s firewall connects B); B\'s message handler answers ' +
        'trySend("pong"); then A sends an empty MESSAGE, delivered as an empty message. MESSAGE packets carry seq = snd.nxt ' +
        `without consuming it and are never acked (nothing else within ${QUIET_MS} ms).`,
      order: 'capture',
      datagrams,
      events: { A: snapshot(wa), B: snapshot(wb) }
    }
  } finally {
    await pair.close()
  }
}

const KEEPALIVE_MS = 100

async function heartbeat(obs) {
  const pair = await proxiedPair()
  const { a, cap } = pair
  try {
    a.write('x')
    await cap.waitFor('ack of x', isAck('B->A', 1))
    const mark = cap.packets.length
    a.setKeepalive(KEEPALIVE_MS)
    const hb = await cap.waitFor('heartbeat', (p) => p.index >= mark)
    const answer = await cap.waitFor('heartbeat answer', (p) => p.index > hb.index)
    a.setKeepalive(0)
    check(hb.index === mark && answer.index === hb.index + 1, 'heartbeat pair comes straight after the data exchange')
    const datagrams = cap.entries(0, answer.index + 1)
    checkShape('heartbeat', datagrams, [
      ['A->B', 0x01, 0, 0],
      ['B->A', 0x00, 0, 1],
      ['A->B', 0x20, 1, 0],
      ['B->A', 0x00, 0, 1]
    ])
    return {
      name: 'heartbeat',
      what:
        `A writes "x" and B acks it; then A.setKeepalive(${KEEPALIVE_MS}): with nothing in flight A sends a HEARTBEAT (header ` +
        'only, seq = snd.nxt = 1, not consumed; its ack field is 0 although A has not received any data) and B answers with ' +
        'one STATE. Recording stops after the first HEARTBEAT/answer pair; keepalive is then switched off.',
      order: 'capture',
      datagrams
    }
  } finally {
    await pair.close()
  }
}

async function destroy(obs) {
  const pair = await proxiedPair()
  const { a, wa, wb, cap } = pair
  try {
    a.write('x')
    await cap.waitFor('ack of x', isAck('B->A', 1))
    a.destroy()
    await Promise.all([wa.closed, wb.closed])
    await sleep(QUIET_MS)
    check(JSON.stringify(wb.events) === JSON.stringify([['data', '78'], ['error', 'ECONNRESET'], ['close']]), 'destroy: B fails with ECONNRESET')
    check(JSON.stringify(wa.events) === JSON.stringify([['close']]), 'destroy: A closes without error')
    const datagrams = cap.entries()
    checkShape('destroy', datagrams, [
      ['A->B', 0x01, 0, 0],
      ['B->A', 0x00, 0, 1],
      ['A->B', 0x10, 1, 0]
    ])
    return {
      name: 'destroy',
      what:
        'A writes "x", B acks it, then A.destroy(): one DESTROY (header only, seq = snd.nxt = 1) and A closes at once ' +
        `without error; B closes with ECONNRESET and sends nothing (nothing within ${QUIET_MS} ms).`,
      order: 'capture',
      datagrams,
      events: { A: snapshot(wa), B: snapshot(wb) }
    }
  } finally {
    await pair.close()
  }
}

const SACK_SIZE = 65536
const SACK_DROPS = [4, 5, 8]
const FIRST_FLIGHT = 10 // initial cwnd

async function sack(obs) {
  const pair = await proxiedPair()
  const { a, wb, cap } = pair
  try {
    const seen = new Map()
    cap.drop = (dir, h) => {
      if (dir !== 'A->B' || !(h.type & 0x01)) return false
      const n = (seen.get(h.seq) || 0) + 1
      seen.set(h.seq, n)
      return n === 1 && SACK_DROPS.includes(h.seq)
    }
    const data = pattern(SACK_SIZE)
    a.write(data)
    await until('B received the bulk write', () => wb.count() >= SACK_SIZE)
    check(wb.bytes().equals(data), 'sack: B received the pattern intact')
    const all = cap.packets

    // (1) A's first flight, seqs 0..9: filled before any ack came back, so with
    //     MTU 1200 payload sizes (the very first packet: 1132) and no probe padding.
    const firstTx = []
    for (let s = 0; s < FIRST_FLIGHT; s++) firstTx.push(all.find((p) => p.dir === 'A->B' && p.h.type === 0x01 && p.h.seq === s))
    check(firstTx.every((p) => p !== undefined && p.h.data_offset === 0 && p.h.ack === 0), 'sack: first flight complete and unpadded')
    check(firstTx.every((p, i) => i === 0 || p.index > firstTx[i - 1].index), 'sack: first flight in seq order')
    const sizes = firstTx.map((p) => p.buf.length - HEADER)
    check(JSON.stringify(sizes) === JSON.stringify([1132, ...new Array(FIRST_FLIGHT - 1).fill(1152)]), 'sack: first-flight payload sizes ' + sizes)
    let offset = 0
    for (const p of firstTx) {
      check(p.buf.subarray(HEADER).equals(data.subarray(offset, offset + p.buf.length - HEADER)), 'sack: first flight carries the stream in order')
      offset += p.buf.length - HEADER
    }

    // (2) B's answers to the first flight = the first 7 datagrams B sent, provided
    //     every other A->B packet left PA after seq 9 (PA and PB forward in order).
    const firstSet = new Set(firstTx)
    const last = firstTx[FIRST_FLIGHT - 1].index
    check(all.every((p) => p.dir !== 'A->B' || firstSet.has(p) || p.index > last), 'sack: every other A->B packet left PA after seq 9')
    const delivered = [...Array(FIRST_FLIGHT).keys()].filter((s) => !SACK_DROPS.includes(s))
    const answers = all.filter((p) => p.dir === 'B->A').slice(0, delivered.length)
    // expected: cumulative ack = first hole; SACK blocks = the received runs above it
    const expected = delivered.map((_, i) => {
      const got = new Set(delivered.slice(0, i + 1))
      let ack = 0
      while (got.has(ack)) ack++
      const blocks = []
      for (let s = ack; s < FIRST_FLIGHT; s++) {
        if (!got.has(s)) continue
        if (blocks.length && blocks[blocks.length - 1][1] === s) blocks[blocks.length - 1][1] = s + 1
        else blocks.push([s, s + 1])
      }
      return { type: blocks.length ? 0x04 : 0x00, ack, blocks }
    })
    check(answers.length === expected.length, 'sack: seven answers')
    answers.forEach((p, i) => {
      const e = entry(p.dir, p.buf)
      const got = { type: e.type, ack: e.ack, blocks: e.sack || [] }
      check(JSON.stringify(got) === JSON.stringify(expected[i]) && e.seq === 0, `sack: answer ${i} ${JSON.stringify(got)} is ${JSON.stringify(expected[i])}`)
    })

    // (3) the first retransmission of every dropped seq, in seq order
    const retx = SACK_DROPS.map((s) => all.filter((p) => p.dir === 'A->B' && p.h.type === 0x01 && p.h.seq === s)[1])
    check(retx.every((p) => p !== undefined), 'sack: every dropped seq retransmitted')
    retx.forEach((p, i) => {
      check(p.buf.equals(firstTx[SACK_DROPS[i]].buf), 'sack: retransmission is byte-identical to the original')
    })

    const datagrams = [
      ...firstTx.map((p) => entry(p.dir, p.buf, { role: 'first_flight', ...(p.dropped ? { dropped: true } : {}) })),
      ...answers.map((p) => entry(p.dir, p.buf, { role: 'first_flight_answer' })),
      ...retx.map((p) => entry(p.dir, p.buf, { role: 'retransmission' }))
    ]
    const out = {
      name: 'sack',
      what:
        `A writes ${SACK_SIZE} bytes of pattern (byte i = i % 251) in one write; the proxy drops the first transmission of ` +
        `A's DATA seqs ${SACK_DROPS.join(', ')}. B acks every DATA packet at once, with its own seq 0: a STATE while nothing is ` +
        'buffered, then SACK packets (ack = the first hole, blocks [start, end) for the buffered runs above it, ascending). ' +
        'A retransmits exactly the dropped seqs, byte-identical (same seq, payload, ack 0, rwnd).',
      order:
        'canonical: (1) "first_flight": A\'s first 10 DATA packets, seqs 0-9 in send order (initial cwnd 10, all sent before ' +
        'any ack; "dropped": true marks the proxy drops); (2) "first_flight_answer": B\'s first 7 datagrams, its answers to ' +
        'the 7 delivered first-flight packets, in send order; (3) "retransmission": the first retransmission of each dropped ' +
        'seq, in seq order. How (1) and (2) interleave, and all later packets (new data from seq 10 on, acks of the ' +
        'retransmissions), depend on timing (RACK, BBR, MTU probing) and are not recorded.',
      payload: { size: SACK_SIZE, pattern: 'byte i = i % 251', sha256: sha256(data) },
      dropped_seqs: SACK_DROPS,
      datagrams
    }
    if (obs) {
      out.observed_nondeterministic = {
        datagrams_total: all.length,
        retransmissions_a: a.retransmits,
        retransmission_capture_positions: retx.map((p) => p.index)
      }
    }
    return out
  } finally {
    await pair.close()
  }
}

const PROBE_SIZE = 4 * 1024 * 1024
const PROBE_RWND = 65536

async function probe(obs) {
  const pair = await proxiedPair({ rwndToA: PROBE_RWND })
  const { a, wb, cap } = pair
  try {
    const data = pattern(PROBE_SIZE, 7)
    a.write(data)
    await until('B received the probe write', () => wb.count() >= PROBE_SIZE)
    check(wb.bytes().equals(data), 'probe: B received the pattern intact (probe padding skipped)')
    const sent = cap.packets.filter((p) => p.dir === 'A->B' && p.h.type & 0x01)
    const probes = sent.filter((p) => p.h.data_offset !== 0)
    check(probes.length > 0, 'probe: at least one padded DATA packet')
    for (const p of probes) {
      check(p.h.type === 0x01 && p.h.id === ID_B && p.h.rwnd === RWND && p.h.ack === 0, 'probe: padded packets are plain DATA')
      check(p.buf.subarray(HEADER, HEADER + p.h.data_offset).every((x) => x === 0), 'probe: padding bytes are zero')
    }
    const first = probes[0]
    const maxLen = Math.max(...sent.map((p) => p.buf.length))
    // distinct datagram lengths in order of first appearance, up to the first maximal one
    const ladder = []
    for (const p of sent) {
      if (!ladder.includes(p.buf.length)) ladder.push(p.buf.length)
      if (p.buf.length === maxLen) break
    }
    const probeLens = []
    for (const p of probes) if (!probeLens.includes(p.buf.length)) probeLens.push(p.buf.length)
    check(maxLen === 1472, 'probe: loopback reaches 1472-byte datagrams (MTU 1500), got ' + maxLen)
    check(first.buf.length === 1204, 'probe: the first probe is a 1204-byte datagram (IP size 1232)')
    const out = {
      name: 'probe',
      what:
        `A writes ${PROBE_SIZE} bytes of pattern (byte i = (7 + i) % 251). MTU probing (UDX.md 4.4) pads DATA packets with ` +
        'data_offset zero bytes between header and payload, so that the datagram reaches probe size - 28 (IPv4): +32 per ' +
        'step from IP size 1232 up to 1500, i.e. datagrams of 1204, 1236, ..., 1460 and finally 1472. B skips the padding and ' +
        `delivers the stream intact. To keep the proxy's socket buffer from overflowing, PB rewrites the rwnd field of B's ` +
        `packets to ${PROBE_RWND} before forwarding them to A (A's own packets are untouched).`,
      order:
        'summary, so "datagrams" is empty: which seqs are probes and how much padding each gets (32, 64, ...) changes run to run',
      datagrams: [],
      first_probe: {
        type: first.h.type,
        id: first.h.id,
        rwnd: first.h.rwnd,
        ack: first.h.ack,
        len: first.buf.length,
        data_offset_nonzero: true,
        padding_all_zero: true,
        payload_is_stream_data: true
      },
      probe_datagram_lengths: probeLens,
      length_ladder: ladder,
      length_ladder_note:
        'distinct lengths of A\'s DATA datagrams in order of first appearance, up to the first of maximal length: 1152 is ' +
        'the first packet (1132 payload bytes), 1172 the MTU 1200 packets (1152 payload bytes), then each probe size',
      max_datagram_len: maxLen
    }
    if (obs) {
      out.observed_nondeterministic = {
        first_probe_header_hex: first.buf.subarray(0, HEADER).toString('hex'),
        first_probe_seq: first.h.seq,
        first_probe_data_offset: first.h.data_offset,
        probes: probes.map((p) => ({ seq: p.h.seq, data_offset: p.h.data_offset, len: p.buf.length })),
        first_datagram_lengths: sent.slice(0, 80).map((p) => p.buf.length),
        data_packets: sent.length,
        retransmissions_a: a.retransmits,
        mtu_a: a.mtu
      }
    }
    return out
  } finally {
    await pair.close()
  }
}

const CRAFTED =
  'Hand-crafted: A is a plain dgram socket that writes UDX headers itself (its "local id" is 0x11223344), B a udx-native ' +
  'stream connected directly to it (connect(socketB, 0x11223344, A\'s port)); every crafted packet carries ack 0 and ' +
  'rwnd 4194304. '

async function endOnlyPayload(obs) {
  const peer = await craftedPeer()
  const { wb, cap, exchange, socketMessages } = peer
  try {
    await exchange(craft(0x02, { seq: 0, ack: 0 }, Buffer.from('abc')), (p) => p.dir === 'B->A')
    await sleep(QUIET_MS)
    const datagrams = cap.entries()
    checkShape('end_only_payload', datagrams, [
      ['A->B', 0x02, 0, 0],
      ['B->A', 0x00, 0, 1]
    ])
    check(JSON.stringify(wb.events) === JSON.stringify([['end']]), 'end_only_payload: end, no data')
    return {
      name: 'end_only_payload',
      what:
        CRAFTED +
        'A sends an END packet (type 0x02, no DATA flag) at seq 0 with 3 payload bytes "abc". B acks it (STATE ack 1: the END ' +
        `consumed seq 0) and reports end of stream, but does not deliver the bytes. Everything B sent within ${QUIET_MS} ms ` +
        'is listed (B\'s own side stays open: no END from B).',
      order: 'capture',
      datagrams,
      events: { B: snapshot(wb) },
      socket_messages: { B: socketMessages.slice() }
    }
  } finally {
    await peer.close()
  }
}

async function dataOffsetTooLarge(obs) {
  const peer = await craftedPeer()
  const { wb, cap, exchange, socketMessages } = peer
  try {
    // (1) data_offset 10 with a 5-byte body: dropped, not acked, nothing delivered
    await exchange(craft(0x01, { dataOffset: 10, seq: 0, ack: 0 }, Buffer.from('hello')))
    check(cap.packets.length === 1 && wb.events.length === 0, 'data_offset_too_large: dropped silently')
    // (2) seq 0 again with a valid data_offset: B skips the bytes, delivers "hello"
    const a2 = await exchange(craft(0x01, { dataOffset: 2, seq: 0, ack: 0 }, Buffer.from('\0\0hello')), (p) => p.dir === 'B->A')
    await until('B delivered hello', () => wb.count() === 5)
    // (3) data_offset == body length: a DATA packet with zero payload bytes
    await exchange(craft(0x01, { dataOffset: 3, seq: 1, ack: 0 }, Buffer.alloc(3)), (p) => p.dir === 'B->A' && p.index > a2.index)
    await sleep(QUIET_MS)
    const datagrams = cap.entries()
    checkShape('data_offset_too_large', datagrams, [
      ['A->B', 0x01, 0, 0],
      ['A->B', 0x01, 0, 0],
      ['B->A', 0x00, 0, 1],
      ['A->B', 0x01, 1, 0],
      ['B->A', 0x00, 0, 2]
    ])
    check(JSON.stringify(wb.events) === JSON.stringify([['data', '68656c6c6f'], ['data', '']]), 'data_offset_too_large: B events')
    return {
      name: 'data_offset_too_large',
      what:
        CRAFTED +
        `(1) DATA seq 0 with data_offset 10 but a 5-byte body: dropped, not acked (nothing within ${QUIET_MS} ms), nothing ` +
        'delivered; (2) DATA seq 0 again, data_offset 2, body 00 00 "hello": B skips the 2 bytes, delivers "hello" and acks 1 ' +
        '(the dropped packet did not count); (3) DATA seq 1 with data_offset 3 and a 3-byte zero body (data_offset == body ' +
        'length, zero payload bytes): B consumes seq 1 (acks 2) and delivers an empty chunk (the "data" event with "").',
      order: 'capture',
      datagrams,
      events: { B: snapshot(wb) },
      socket_messages: { B: socketMessages.slice() }
    }
  } finally {
    await peer.close()
  }
}

async function outOfOrder(obs) {
  const peer = await craftedPeer()
  const { wb, cap, exchange } = peer
  try {
    const a1 = await exchange(craft(0x01, { seq: 1, ack: 0 }, Buffer.from('b')), (p) => p.dir === 'B->A')
    check(wb.count() === 0, 'out_of_order: seq 1 buffered')
    await exchange(craft(0x01, { seq: 0, ack: 0 }, Buffer.from('a')), (p) => p.dir === 'B->A' && p.index > a1.index)
    await until('B delivered ab', () => wb.count() === 2)
    await sleep(QUIET_MS)
    const datagrams = cap.entries()
    checkShape('out_of_order', datagrams, [
      ['A->B', 0x01, 1, 0],
      ['B->A', 0x04, 0, 0],
      ['A->B', 0x01, 0, 0],
      ['B->A', 0x00, 0, 2]
    ])
    check(JSON.stringify(datagrams[1].sack) === '[[1,2]]', 'out_of_order: SACK block [1,2)')
    check(wb.bytes().toString() === 'ab', 'out_of_order: delivered in order')
    return {
      name: 'out_of_order',
      what:
        CRAFTED +
        'A sends DATA seq 1 "b" first: B buffers it and answers a SACK (ack 0, block [1,2)); then DATA seq 0 "a": B ' +
        'delivers "a" then "b" and answers STATE ack 2.',
      order: 'capture',
      datagrams,
      events: { B: snapshot(wb) }
    }
  } finally {
    await peer.close()
  }
}

const WRAP_SEQ = 0xfffffffe

async function sequenceWrap(obs) {
  const pair = await proxiedPair({ seqA: WRAP_SEQ, ackB: WRAP_SEQ })
  const { a, wb, cap } = pair
  try {
    const acks = [0xffffffff, 0, 1]
    const chunks = ['a', 'b', 'c']
    for (let i = 0; i < 3; i++) {
      const mark = cap.packets.length
      a.write(chunks[i])
      await cap.waitFor('ack ' + acks[i], isAck('B->A', acks[i]), mark)
    }
    await sleep(QUIET_MS)
    check(wb.bytes().toString() === 'abc', 'sequence_wrap: B got abc')
    const datagrams = cap.entries()
    checkShape('sequence_wrap', datagrams, [
      ['A->B', 0x01, 0xfffffffe, 0],
      ['B->A', 0x00, 0, 0xffffffff],
      ['A->B', 0x01, 0xffffffff, 0],
      ['B->A', 0x00, 0, 0],
      ['A->B', 0x01, 0, 0],
      ['B->A', 0x00, 0, 1]
    ])
    return {
      name: 'sequence_wrap',
      what:
        `A is created with udx.createStream(0x11223344, { seq: ${hexId(WRAP_SEQ)} }); B connects (in its firewall) with ` +
        `connect(socket, 0x11223344, port, host, { ack: ${hexId(WRAP_SEQ)} }). A writes "a", "b", "c", each after the ` +
        'previous one was acked: DATA seqs 0xfffffffe, 0xffffffff, 0x00000000, acked with 0xffffffff, 0, 1 (seq wraps mod 2^32).',
      order: 'capture',
      datagrams,
      events: { B: snapshot(wb) }
    }
  } finally {
    await pair.close()
  }
}

// ---------------------------------------------------------------- main

const CASES = [
  ['open_data_end', openDataEnd],
  ['message', message],
  ['heartbeat', heartbeat],
  ['destroy', destroy],
  ['sack', sack],
  ['probe', probe],
  ['end_only_payload', endOnlyPayload],
  ['data_offset_too_large', dataOffsetTooLarge],
  ['out_of_order', outOfOrder],
  ['sequence_wrap', sequenceWrap]
]

async function runCase(name, fn, obs) {
  for (let attempt = 1; ; attempt++) {
    try {
      const c = await fn(obs)
      log(`case ${name} ok` + (attempt > 1 ? ` (attempt ${attempt})` : ''))
      return c
    } catch (err) {
      if (attempt >= ATTEMPTS) throw err
      log(`case ${name} attempt ${attempt} failed, retrying: ${err.message}`)
    }
  }
}

async function main() {
  const args = process.argv.slice(2)
  const obs = args.includes('--observed')
  if (args.some((x) => x !== '--observed')) throw new Error('usage: node udx_vectors.mjs [--observed]')

  const watchdog = setTimeout(() => {
    log(`watchdog: still running after ${WATCHDOG_MS} ms`)
    process.exit(1)
  }, WATCHDOG_MS)
  watchdog.unref()

  const cases = []
  for (const [name, fn] of CASES) cases.push(await runCase(name, fn, obs))

  const out = {
    generator: 'tests/interop/js/udx_vectors.mjs',
    packages: packages(),
    host: HOST,
    ids: { A: ID_A, B: ID_B },
    ids_hex: { A: hexId(ID_A), B: hexId(ID_B) },
    rwnd: RWND,
    conventions:
      'dir "A->B" = sent by A (local id 0x11223344) to B (local id 0x55667788), so its header id is B\'s; "B->A" the ' +
      'reverse. A and B are udx-native streams joined through two logging dgram proxies, except in the hand-crafted cases. ' +
      'hex = the whole datagram unless "truncated": true (then header + data_offset bytes + the first 16 payload bytes, ' +
      'and payload_sha256 covers the whole payload after data_offset). Decoded fields: type, data_offset, id, rwnd, seq, ack ' +
      '(u32 little-endian), payload_len = len - 20 - data_offset (null if negative), len = datagram length, flags = names of ' +
      'the type bits (STATE for 0), sack = [start, end) blocks for SACK packets. Stream events: ["data", hex], ["end"], ' +
      '["message", hex], ["error", code], ["close"]. Keys named observed_nondeterministic appear only with --observed and ' +
      'vary run to run.',
    cases
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
