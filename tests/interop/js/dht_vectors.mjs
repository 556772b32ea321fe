// Known-answer vectors for the Hyperswarm DHT (dht-rpc + hyperdht), produced by the real packages.
//
//   node tests/interop/js/dht_vectors.mjs > tests/vectors/dht.json
//   node tests/interop/js/dht_vectors.mjs --observed   # adds run-dependent details (not for the vectors file)
//
// Every byte string comes out of the packages' own code paths (see /work/shared/dht/HYPERDHT.md
// sections 1, 2 and 7 for the layouts):
//
// - addresses: dht-rpc lib/peer.js (`ipv4`, `ipv4Array`, `id`).
// - rpc_messages: dht-rpc lib/io.js. Requests are built by `IO.createRequest` + `Request.send`,
//   replies by `Request.sendReply`/`reply`/`error`/`relay`, both captured at the socket's
//   `trySend`; decoded back by `Request.decode` and by `IO.onmessage` (which runs the private
//   `decodeReply`). The "exchanges" run a small in-memory network: real `IO` objects whose
//   sockets are stand-ins that hand every datagram to the receiving node's `IO.onmessage`;
//   requests are answered by dht-rpc's own `DHT.prototype._onrequest` and hyperdht's own
//   `HyperDHT.prototype.onrequest`, `Persistent` (lib/persistent.js) and `Router`
//   (lib/router.js), with fixed tids, token secrets and addresses.
// - tokens: dht-rpc `IO.token` and its secret rotation in `IO._drain`.
// - namespaces, hyperdht_values, signatures: hyperdht lib/constants.js, lib/messages.js,
//   lib/persistent.js (`signAnnounce`, `signUnannounce`, `signMutable`, `verifyMutable`).
// - live: a real loopback testnet (hyperdht/testnet createTestnet(3) + testnet.createNode()),
//   every datagram captured by wrapping `send`/`trySend` of udx-native's socket class. By
//   default only what does not vary between runs is written; --observed adds the raw datagrams
//   under "observed_nondeterministic" keys.
//
// The output is deterministic (stdout only; progress goes to stderr): running it twice gives
// byte-identical output. Every section checks itself (decode-back, re-encode, signatures verify,
// the storing node accepts what was signed, ...); the script exits non-zero if any check fails.
// Only 127.0.0.1 is used; the live testnet is given its own bootstrap list, the public DHT is
// never contacted. A 60 s watchdog bounds the run.

import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const require = createRequire(import.meta.url)
const HERE = path.dirname(fileURLToPath(import.meta.url))
const NM = path.join(HERE, 'node_modules')

// Wrap udx-native's socket send paths before anything creates a socket (used by the live section only).
const UdxSocket = require('udx-native/lib/socket.js')
const LIVE = { on: false, log: [] }
for (const fn of ['send', 'trySend']) {
  const orig = UdxSocket.prototype[fn]
  UdxSocket.prototype[fn] = function (buffer, port, host, ttl) {
    const copy = Buffer.from(buffer)
    const ret = orig.call(this, buffer, port, host, ttl)
    if (LIVE.on) {
      LIVE.log.push({
        index: LIVE.log.length,
        src: this.bound ? this.address().port : 0,
        dst: { host: host || '127.0.0.1', port },
        ttl: ttl || 0,
        buf: copy
      })
    }
    return ret
  }
}

const b4a = require('b4a')
const c = require('compact-encoding')
const sodium = require('sodium-universal')
const hcrypto = require('hypercore-crypto')
const Table = require('kademlia-routing-table')
const DHT = require('dht-rpc')
const IO = require('dht-rpc/lib/io.js')
const peer = require('dht-rpc/lib/peer.js')
const RPC_COMMANDS = require('dht-rpc/lib/commands.js')
const DHTError = require('dht-rpc/lib/errors.js')
const HyperDHT = require('hyperdht')
const createTestnet = require('hyperdht/testnet')
const m = require('hyperdht/lib/messages.js')
const { COMMANDS, NS, ERROR, FIREWALL } = require('hyperdht/lib/constants.js')
const Persistent = require('hyperdht/lib/persistent.js')
const Router = require('hyperdht/lib/router.js')

const PACKAGES = [
  'hyperdht',
  'dht-rpc',
  'udx-native',
  'compact-encoding',
  'b4a',
  'sodium-universal',
  'sodium-native',
  'hypercore-crypto',
  'kademlia-routing-table',
  'record-cache',
  'xache',
  'nat-sampler'
]

const WATCHDOG_MS = 60000
const ATTEMPTS = 3

// ---------------------------------------------------------------- helpers

const hex = (b) => (b === null || b === undefined ? null : b4a.toString(b, 'hex'))
const unhex = (s) => b4a.from(s, 'hex')
const fill = (n, v) => b4a.alloc(n, v)
// byte i = (start + i * step) % 256
const seq = (n, start = 0, step = 1) => {
  const b = b4a.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (start + i * step) % 256
  return b
}
const utf8 = (s) => b4a.from(s, 'utf8')
const H = (b) => HyperDHT.hash(b) // hyperdht lib/crypto.js hash(): BLAKE2b-256, no key
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const settle = () => new Promise((resolve) => setImmediate(resolve))
const addr = (host, port) => ({ host, port })
const addrStr = (a) => `${a.host}:${a.port}`

function log(...args) {
  console.error('[dht_vectors]', ...args)
}

function check(ok, what) {
  if (!ok) throw new Error('self-check failed: ' + what)
}

function checkHex(got, want, what) {
  check(got === want, `${what}: got ${got}, want ${want}`)
}

function packages() {
  const out = {}
  for (const name of PACKAGES) {
    const pkg = JSON.parse(readFileSync(path.join(NM, name, 'package.json'), 'utf8'))
    out[name] = pkg.version
  }
  return out
}

// JSON form of decoded values: bytes -> hex, {host, port, ...} address objects -> {host, port}
function plain(v) {
  if (v === null || v === undefined) return null
  if (b4a.isBuffer(v) || v instanceof Uint8Array) return hex(v)
  if (Array.isArray(v)) return v.map(plain)
  if (typeof v === 'object') {
    if (typeof v.host === 'string' && typeof v.port === 'number') return { host: v.host, port: v.port }
    const out = {}
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = plain(x)
    return out
  }
  return v
}

const same = (a, b) => JSON.stringify(plain(a)) === JSON.stringify(plain(b))

function roundtrip(enc, input, what) {
  const bytes = c.encode(enc, input)
  const decoded = c.decode(enc, bytes)
  checkHex(hex(c.encode(enc, decoded)), hex(bytes), what + ': decode then re-encode')
  return { bytes, decoded }
}

// ---------------------------------------------------------------- constants, keys

const INTERNAL_NAMES = Object.fromEntries(Object.entries(RPC_COMMANDS).map(([k, v]) => [v, k]))
const HYPERDHT_NAMES = Object.fromEntries(Object.entries(COMMANDS).map(([k, v]) => [v, k]))
const REQ_FLAG_NAMES = [[1, 'id'], [2, 'token'], [4, 'internal'], [8, 'target'], [16, 'value']]
const RES_FLAG_NAMES = [[1, 'id'], [2, 'token'], [4, 'closerNodes'], [8, 'error'], [16, 'value']]
const flagNames = (flags, table) => table.filter(([bit]) => flags & bit).map(([, n]) => n)

const SEED_1 = fill(32, 0x01)
const SEED_2 = fill(32, 0x02)
const SEED_3 = fill(32, 0x03)
const KP_1 = HyperDHT.keyPair(SEED_1) // server
const KP_2 = HyperDHT.keyPair(SEED_2) // client
const KP_3 = HyperDHT.keyPair(SEED_3)

// the topic of HYPERDHT.md section 7
const TOPIC = unhex('0c565b13937737370d895b68cf0277574231d89a232b3f5671e692f640c58321')
const TOPIC_2 = H(utf8('peersockets dht vectors topic 2'))
const TARGET = H(utf8('peersockets dht vectors target'))
const TOKEN = seq(32, 0xa0)
const REFRESH = seq(32, 0x40)
const FAKE_SIGNATURE = seq(64, 0x80)
const BUMP = 1700000000000 // hyperdht bumps are millisecond timestamps

// ---------------------------------------------------------------- dht-rpc decoders (their own code)

const FAKE_UDX = { watchNetworkInterfaces: () => ({ on() {}, destroy() {} }) }
const ZERO_TABLE = () => new Table(b4a.alloc(32))

// the Request class of dht-rpc lib/io.js is not exported: take it from a request object
const RequestClass = (() => {
  const io = new IO(ZERO_TABLE(), FAKE_UDX, {})
  const req = io.createRequest({ id: null, host: '127.0.0.1', port: 1 }, null, true, 0, null, null, null, 0)
  io.inflight.length = 0
  return req.constructor
})()

// Request.decode(io, socket, from, state), as IO.onmessage calls it
function rpcDecodeRequest(buf, src) {
  const io = new IO(ZERO_TABLE(), FAKE_UDX, {})
  const from = { id: null, host: src.host, port: src.port }
  return RequestClass.decode(io, null, from, { start: 1, end: buf.byteLength, buffer: buf })
}

// decodeReply() of lib/io.js is private: run IO.onmessage with an in-flight request of that tid
function rpcDecodeResponse(buf, src) {
  const io = new IO(ZERO_TABLE(), FAKE_UDX, {})
  const state = { start: 1, end: buf.byteLength, buffer: buf }
  c.uint.decode(state) // flags
  io._tid = c.uint16.decode(state)
  const req = io.createRequest({ id: null, host: src.host, port: src.port }, null, true, 0, null, null, null, 0)
  let res = null
  req.onresponse = (r) => {
    res = r
  }
  io.onmessage(null, buf, { host: src.host, port: src.port })
  io.inflight.length = 0
  return res
}

// the raw id bytes (dht-rpc keeps an id only if it equals H(source address))
function rawId(buf) {
  const state = { start: 1, end: buf.byteLength, buffer: buf }
  const flags = c.uint.decode(state)
  if (!(flags & 1)) return null
  state.start += 2 + 6
  return c.fixed32.decode(state)
}

function tryDecode(enc, buf) {
  try {
    return plain(c.decode(enc, buf))
  } catch {
    return 'undecodable'
  }
}

function decodeRequestValue(r) {
  if (r.value === null) return undefined
  if (r.internal) {
    if (r.command === RPC_COMMANDS.PING_NAT && r.value.byteLength >= 2) return { port: c.decode(c.uint16, r.value.subarray(0, 2)) }
    if (r.command === RPC_COMMANDS.DELAYED_PING && r.value.byteLength >= 4) return { delay_ms: c.decode(c.uint32, r.value.subarray(0, 4)) }
    if (r.command === RPC_COMMANDS.DOWN_HINT && r.value.byteLength >= 6) return plain(c.decode(peer.ipv4, r.value.subarray(0, 6)))
    return undefined
  }
  switch (r.command) {
    case COMMANDS.PEER_HANDSHAKE:
      return tryDecode(m.handshake, r.value)
    case COMMANDS.PEER_HOLEPUNCH:
      return tryDecode(m.holepunch, r.value)
    case COMMANDS.ANNOUNCE:
    case COMMANDS.UNANNOUNCE:
      return tryDecode(m.announce, r.value)
    case COMMANDS.MUTABLE_PUT:
      return tryDecode(m.mutablePutRequest, r.value)
    case COMMANDS.MUTABLE_GET:
      return { seq: tryDecode(c.uint, r.value) }
    case COMMANDS.PLUGIN:
      return tryDecode(m.pluginRequest, r.value)
  }
  return undefined
}

function decodeResponseValue(value, command) {
  if (value === null || command === null || command === undefined) return undefined
  switch (command) {
    case COMMANDS.PEER_HANDSHAKE:
      return tryDecode(m.handshake, value)
    case COMMANDS.PEER_HOLEPUNCH:
      return tryDecode(m.holepunch, value)
    case COMMANDS.FIND_PEER:
      return tryDecode(m.peer, value)
    case COMMANDS.LOOKUP:
      return tryDecode(m.lookupRawReply, value)
    case COMMANDS.MUTABLE_GET:
      return tryDecode(m.mutableGetResponse, value)
  }
  return undefined
}

// Decode one datagram with dht-rpc's decoders. src: the UDP source address.
// command: for responses, the command of the request it answers (to decode hyperdht values).
function decodeDatagram(buf, src, command = null) {
  if (buf.byteLength < 2) return { type: 'too_short' }
  if (buf[0] === 0x03) {
    const r = rpcDecodeRequest(buf, src)
    if (r === null) return { type: 'undecodable_request' }
    const flags = buf[1] // a uint: one byte while below 0xfd
    const id = rawId(buf)
    const d = {
      type: 'request',
      flags,
      flag_names: flagNames(flags, REQ_FLAG_NAMES),
      tid: r.tid,
      to: plain(r.to),
      id: hex(id)
    }
    if (id !== null) d.id_valid = r.from.id !== null
    Object.assign(d, {
      token: hex(r.token),
      internal: r.internal,
      command: r.command,
      command_name: (r.internal ? INTERNAL_NAMES[r.command] : HYPERDHT_NAMES[r.command]) || null,
      target: hex(r.target),
      value: hex(r.value)
    })
    const vd = decodeRequestValue(r)
    if (vd !== undefined) d.value_decoded = vd
    return d
  }
  if (buf[0] === 0x13) {
    const r = rpcDecodeResponse(buf, src)
    if (r === null) return { type: 'undecodable_response' }
    const flags = buf[1]
    const id = rawId(buf)
    const d = {
      type: 'response',
      flags,
      flag_names: flagNames(flags, RES_FLAG_NAMES),
      tid: r.tid,
      to: plain(r.to),
      id: hex(id)
    }
    if (id !== null) d.id_valid = r.from.id !== null
    Object.assign(d, {
      token: hex(r.token),
      closer_nodes: plain(r.closerNodes),
      error: r.error,
      value: hex(r.value)
    })
    const vd = decodeResponseValue(r.value, command)
    if (vd !== undefined) d.value_decoded = vd
    return d
  }
  return { type: 'not_rpc', first_byte: buf[0] }
}

// ---------------------------------------------------------------- addresses

function addresses() {
  const pairs = [
    ['127.0.0.1', 49737],
    ['127.0.0.1', 49738],
    ['127.0.0.1', 49739],
    ['127.0.0.1', 0],
    ['127.0.0.1', 1],
    ['127.0.0.1', 256],
    ['0.0.0.0', 0],
    ['255.255.255.255', 65535],
    ['10.0.0.1', 8080],
    ['192.168.1.10', 443],
    ['88.99.3.86', 49737]
  ]
  const entries = pairs.map(([host, port]) => {
    const enc = c.encode(peer.ipv4, { host, port })
    check(enc.byteLength === 6, 'ipv4 encoding is 6 bytes')
    const dec = c.decode(peer.ipv4, enc)
    check(dec.host === host && dec.port === port, `ipv4 decode ${host}:${port}`)
    const id = peer.id(host, port)
    checkHex(hex(id), hex(H(enc)), `id of ${host}:${port} is H(encoding)`)
    return { host, port, encoding: hex(enc), id: hex(id) }
  })
  checkHex(entries[1].encoding, '7f0000014ac2', 'HYPERDHT.md 1.3 encoding of 127.0.0.1:49738')
  checkHex(entries[1].id, 'ea50f55683100864aa622153cff29c6f99eea9e753f8e211d6b01e0a8af2ac6c', 'HYPERDHT.md 1.3 id of 127.0.0.1:49738')

  const lists = [[], [pairs[0]], [pairs[1], pairs[2], pairs[8]]].map((list) => {
    const input = list.map(([host, port]) => ({ host, port }))
    const enc = c.encode(peer.ipv4Array, input)
    check(same(c.decode(peer.ipv4Array, enc), input), 'ipv4Array decode')
    return { addresses: input, encoding: hex(enc) }
  })

  return {
    what:
      'dht-rpc lib/peer.js: ipv4 = compact-encoding ipv4Address (4 bytes of IPv4 in network order, then the port as u16 ' +
      'little-endian), id(host, port) = BLAKE2b-256 of those 6 bytes, ipv4Array = compact-encoding array (uint count, ' +
      'then 6-byte entries).',
    entries,
    arrays: lists
  }
}

// ---------------------------------------------------------------- tokens

function tokens() {
  const secret0 = seq(32, 0x00)
  const secret1 = seq(32, 0x20)
  const io = new IO(ZERO_TABLE(), FAKE_UDX, {})
  const buf = b4a.concat([secret0, secret1])
  io._secrets = [buf.subarray(0, 32), buf.subarray(32, 64)]

  const hosts = ['127.0.0.1', '10.0.0.1', '192.168.1.10', '255.255.255.255', '88.99.3.86']
  const entries = hosts.map((host) => {
    const t0 = io.token({ id: null, host, port: 1 }, 0)
    const t1 = io.token({ id: null, host, port: 49738 }, 1)
    checkHex(hex(io.token({ host, port: 65535 }, 1)), hex(t1), 'token does not depend on the port')
    const want = b4a.alloc(32)
    sodium.crypto_generichash(want, utf8(host), secret1)
    checkHex(hex(t1), hex(want), 'token = keyed BLAKE2b-256(host string, secret)')
    return { host, host_bytes: hex(utf8(host)), token_secret0: hex(t0), token_secret1: hex(t1) }
  })

  // rotation: every 10th IO._drain() (750 ms timer) swaps the secrets and hashes the one now in slot 1
  for (let i = 0; i < 9; i++) io._drain()
  checkHex(hex(io._secrets[0]) + hex(io._secrets[1]), hex(secret0) + hex(secret1), 'no rotation after 9 drains')
  io._drain()
  const after = [b4a.from(io._secrets[0]), b4a.from(io._secrets[1])]
  checkHex(hex(after[0]), hex(secret1), 'rotation: slot 0 = old slot 1')
  checkHex(hex(after[1]), hex(H(secret0)), 'rotation: slot 1 = H(old slot 0)')
  const rotated = hosts.slice(0, 2).map((host) => ({
    host,
    token_secret0: hex(io.token({ host, port: 1 }, 0)),
    token_secret1: hex(io.token({ host, port: 1 }, 1))
  }))
  checkHex(rotated[0].token_secret0, entries[0].token_secret1, 'a token issued before the rotation matches slot 0 after it')

  return {
    what:
      'dht-rpc lib/io.js IO.token(addr, i) = crypto_generichash(32, UTF-8 bytes of addr.host, key = secret i); the port ' +
      'is not used. Replies carry token(requester, 1); a request token is accepted if it equals token(from, 1) or ' +
      'token(from, 0), else the node answers error 2 (see rpc_messages exchange invalid_token).',
    secrets: [hex(secret0), hex(secret1)],
    entries,
    rotation: {
      what:
        'IO._drain() runs every 750 ms; on every 10th run it swaps the two secrets and replaces the one that moved to ' +
        'slot 1 with BLAKE2b-256(itself). So: new slot 0 = old slot 1, new slot 1 = H(old slot 0).',
      drains: 10,
      secrets_after: after.map(hex),
      entries_after: rotated
    }
  }
}

// ---------------------------------------------------------------- namespaces

function namespaces() {
  const spec = {
    PEER_HANDSHAKE: '14d6d4b49214ab1033ed204976caa258bae9e1e8543b9ad1fd996a910b0c4e3a',
    PEER_HOLEPUNCH: 'f1191cd5e67b10b54a507033280ed1ff0e12278268d5679c8f93d417210d168b',
    ANNOUNCE: '36386adddf9f6fd60db83a6f42fc159d1146aa8644037664230aaa1f0179d497',
    UNANNOUNCE: 'ded293cd93fb395e756ecf5fff426529e72c36eacc22e5ed944d9099a2561e32',
    MUTABLE_PUT: '668e823edd5ce7f5338d68bf1161f4a3c28ce437ee2ab49efd30d99366039b1e',
    PLUGIN: '6b8a2a8623f28c6c02a1e22abe515ce31cafd9af61d4b69970639aa7eb96a8d5'
  }
  const name = 'hyperswarm/dht'
  const hname = H(utf8(name))
  checkHex(hex(hname), 'd70d90f7efc42f93e1ad5837e682a6010cf551013c2d2d043f40d8fbe07dcb90', 'HYPERDHT.md 2.2 H("hyperswarm/dht")')
  const entries = Object.keys(NS).map((k) => {
    const i = COMMANDS[k]
    const ns = NS[k]
    checkHex(hex(ns), hex(H(b4a.concat([hname, b4a.from([i])]))), `NS_${k} = H(H(name) || byte ${i})`)
    checkHex(hex(ns), hex(hcrypto.namespace(name, [i])[0]), `NS_${k} = hypercore-crypto.namespace`)
    checkHex(hex(ns), spec[k], `NS_${k} matches HYPERDHT.md 2.2`)
    return { constant: 'NS_' + k, index: i, value: hex(ns) }
  })
  return {
    what:
      'hyperdht lib/constants.js: crypto.namespace("hyperswarm/dht", [command ids]) from hypercore-crypto, i.e. ' +
      'NS(i) = BLAKE2b-256(BLAKE2b-256("hyperswarm/dht") || one byte i). Exported as constants.NS.',
    name,
    name_hash: hex(hname),
    entries,
    commands: COMMANDS,
    internal_commands: RPC_COMMANDS,
    errors: { dht_rpc: { UNKNOWN_COMMAND: DHTError.UNKNOWN_COMMAND, INVALID_TOKEN: DHTError.INVALID_TOKEN }, hyperdht: ERROR },
    firewall: FIREWALL
  }
}

// ---------------------------------------------------------------- hyperdht values

const RELAYS = [addr('127.0.0.1', 49738), addr('127.0.0.1', 49739), addr('10.0.0.1', 49737), addr('192.168.1.10', 443)]

function hyperdhtValues() {
  const out = {
    what:
      'hyperdht lib/messages.js encoders with fixed inputs. "input" is what was passed to the encoder (null = ' +
      'absent, bump 0 = absent) and "encoding" the bytes. The script checks that the same module decodes every ' +
      'encoding back to exactly "input" and re-encodes that to the same bytes; "decoded" appears only in the ' +
      '*_decode_only entries, where it is not the input of an encoding.'
  }

  // peer records: 0..4 relay addresses (the encoder does not cap; a storing node keeps at most 3)
  out.peer = [0, 1, 2, 3, 4].map((n) => {
    const input = { publicKey: KP_1.publicKey, relayAddresses: RELAYS.slice(0, n) }
    const { bytes, decoded } = roundtrip(m.peer, input, 'peer')
    check(same(decoded, input), 'peer decodes to its input')
    return { relay_count: n, input: plain(input), encoding: hex(bytes) }
  })

  // lookup replies: hyperdht encodes them with lookupRawReply = array(raw encoded peer) + uint bump
  const records = []
  for (let i = 0; i < 20; i++) {
    const kp = HyperDHT.keyPair(fill(32, 0x10 + i))
    records.push({ publicKey: kp.publicKey, relayAddresses: RELAYS.slice(0, i % 4) })
  }
  const lookupCases = [
    [0, 0],
    [1, 0],
    [1, 1],
    [2, 252],
    [3, 253],
    [3, 65536],
    [20, 0],
    [20, BUMP]
  ]
  out.lookup_reply = lookupCases.map(([n, bump]) => {
    const peers = records.slice(0, n)
    const raw = peers.map((p) => c.encode(m.peer, p))
    const bytes = c.encode(m.lookupRawReply, { peers: raw, bump })
    const decoded = c.decode(m.lookupRawReply, bytes)
    check(same(decoded.peers, peers) && decoded.bump === bump, 'lookup reply decodes')
    checkHex(hex(bytes), hex(b4a.concat([c.encode(m.peers, peers), c.encode(c.uint, bump)])), 'lookup reply = peers array + uint bump')
    return { record_count: n, bump, input: { peers: plain(peers), bump }, encoding: hex(bytes) }
  })
  {
    // a reply without the trailing bump decodes with bump 0
    const bytes = c.encode(m.peers, records.slice(0, 1))
    const decoded = c.decode(m.lookupRawReply, bytes)
    check(decoded.bump === 0, 'lookup reply without bump decodes bump 0')
    out.lookup_reply_decode_only = [
      { what: 'no bump after the records: lookupRawReply.decode gives bump 0', encoding: hex(bytes), decoded: plain(decoded) }
    ]
  }

  // announce: every flag combination
  out.announce = []
  for (let flags = 0; flags < 16; flags++) {
    const input = {
      peer: flags & 1 ? { publicKey: KP_1.publicKey, relayAddresses: RELAYS.slice(0, 2) } : null,
      refresh: flags & 2 ? REFRESH : null,
      signature: flags & 4 ? FAKE_SIGNATURE : null,
      bump: flags & 8 ? BUMP : 0
    }
    const { bytes, decoded } = roundtrip(m.announce, input, 'announce')
    check(bytes[0] === flags, 'announce flags byte')
    check(same(decoded, input), 'announce decodes to its input')
    out.announce.push({ flags, flag_names: flagNames(flags, [[1, 'peer'], [2, 'refresh'], [4, 'signature'], [8, 'bump']]), input: plain(input), encoding: hex(bytes) })
  }
  {
    // bump 1 (smallest non-zero) and a refresh-only announce as hyperdht's refresh path reads it
    const input = { peer: { publicKey: KP_2.publicKey, relayAddresses: [] }, refresh: null, signature: FAKE_SIGNATURE, bump: 1 }
    const { bytes, decoded } = roundtrip(m.announce, input, 'announce bump 1')
    out.announce.push({ flags: bytes[0], flag_names: ['peer', 'signature', 'bump'], input: plain(input), encoding: hex(bytes) })
  }

  // mutable
  const MUT_VALUES = [
    [0, b4a.alloc(0)],
    [1, utf8('hello')],
    [252, seq(10)],
    [253, seq(300)],
    [4294967296, utf8('big seq')]
  ]
  out.mutable_signable = MUT_VALUES.map(([s, value]) => {
    const { bytes, decoded } = roundtrip(m.mutableSignable, { seq: s, value }, 'mutableSignable')
    check(decoded.seq === s && b4a.equals(decoded.value, value), 'mutableSignable decodes')
    return { input: { seq: s, value: hex(value) }, encoding: hex(bytes) }
  })
  out.mutable_put_request = MUT_VALUES.map(([s, value]) => {
    const signature = Persistent.signMutable(s, value, KP_1)
    const input = { publicKey: KP_1.publicKey, seq: s, value, signature }
    const { bytes, decoded } = roundtrip(m.mutablePutRequest, input, 'mutablePutRequest')
    check(same(decoded, input), 'mutablePutRequest decodes')
    return { input: plain(input), encoding: hex(bytes) }
  })
  out.mutable_get_response = MUT_VALUES.map(([s, value]) => {
    const signature = Persistent.signMutable(s, value, KP_1)
    const input = { seq: s, value, signature }
    const { bytes, decoded } = roundtrip(m.mutableGetResponse, input, 'mutableGetResponse')
    check(same(decoded, input), 'mutableGetResponse decodes')
    return { input: plain(input), encoding: hex(bytes) }
  })
  out.mutable_get_request = [0, 1, 252, 253, 65535, 65536, 4294967295, 4294967296].map((s) => {
    const bytes = c.encode(c.uint, s) // hyperdht index.js mutableGet: c.encode(c.uint, seq)
    check(c.decode(c.uint, bytes) === s, 'uint seq decodes')
    return { seq: s, encoding: hex(bytes) }
  })

  // handshake: every mode x every flag combination
  const NOISE = seq(12, 0x30)
  out.handshake = []
  for (let mode = 0; mode <= 4; mode++) {
    for (let flags = 0; flags < 4; flags++) {
      const input = {
        mode,
        noise: NOISE,
        peerAddress: flags & 1 ? addr('127.0.0.1', 57797) : null,
        relayAddress: flags & 2 ? addr('127.0.0.1', 49738) : null
      }
      const { bytes, decoded } = roundtrip(m.handshake, input, 'handshake')
      check(same(decoded, input), 'handshake decodes')
      out.handshake.push({ mode, flags, input: plain(input), encoding: hex(bytes) })
    }
  }
  for (const noise of [b4a.alloc(0), seq(109, 0x37), seq(300)]) {
    const input = { mode: 0, noise, peerAddress: null, relayAddress: null }
    const { bytes, decoded } = roundtrip(m.handshake, input, 'handshake noise length')
    out.handshake.push({ mode: 0, flags: 0, input: plain(input), encoding: hex(bytes) })
  }

  // holepunch: every mode x peerAddress, several ids and payload sizes
  out.holepunch = []
  for (let mode = 0; mode <= 4; mode++) {
    for (const withPeer of [false, true]) {
      for (const id of [0, 7, 300]) {
        const input = { mode, id, payload: seq(10, 0x50), peerAddress: withPeer ? addr('127.0.0.1', 38394) : null }
        const { bytes, decoded } = roundtrip(m.holepunch, input, 'holepunch')
        check(same(decoded, input), 'holepunch decodes')
        out.holepunch.push({ mode, flags: withPeer ? 1 : 0, id, input: plain(input), encoding: hex(bytes) })
      }
    }
  }

  // noise payload (the plaintext inside the IK handshake messages)
  const np = (o) => ({
    version: 1,
    error: 0,
    firewall: 0,
    holepunch: null,
    addresses4: [],
    addresses6: [],
    udx: null,
    secretStream: null,
    relayThrough: null,
    relayAddresses: null,
    ...o
  })
  const npCases = [
    ['empty', np({})],
    ['error_firewall', np({ error: ERROR.TRY_LATER, firewall: FIREWALL.RANDOM })],
    [
      'HYPERDHT.md 7.4 payload 1 (client)',
      np({ udx: { version: 1, reusableSocket: false, id: 0xefd4cbfe, seq: 0 }, secretStream: { version: 1 } })
    ],
    [
      'HYPERDHT.md 7.4 payload 2 (server)',
      np({
        holepunch: {
          id: 0,
          relays: [
            { relayAddress: addr('127.0.0.1', 49738), peerAddress: addr('127.0.0.1', 38394) },
            { relayAddress: addr('127.0.0.1', 49740), peerAddress: addr('127.0.0.1', 38394) },
            { relayAddress: addr('127.0.0.1', 49739), peerAddress: addr('127.0.0.1', 38394) }
          ]
        },
        udx: { version: 1, reusableSocket: false, id: 0xe586a48f, seq: 0 },
        secretStream: { version: 1 },
        relayAddresses: [addr('127.0.0.1', 49738), addr('127.0.0.1', 49740), addr('127.0.0.1', 49739)]
      })
    ],
    [
      'all_fields',
      np({
        error: 0,
        firewall: FIREWALL.CONSISTENT,
        holepunch: { id: 5, relays: [{ relayAddress: addr('10.0.0.1', 49737), peerAddress: addr('192.168.1.10', 443) }] },
        addresses4: [addr('192.168.1.10', 50000), addr('10.0.0.2', 50001)],
        addresses6: [addr('fd00:0:0:0:0:0:0:1', 50002)],
        udx: { version: 1, reusableSocket: true, id: 1, seq: 65536 },
        secretStream: { version: 1 },
        relayThrough: { version: 1, publicKey: KP_3.publicKey, token: TOKEN },
        relayAddresses: []
      })
    ]
  ]
  out.noise_payload = npCases.map(([name, input]) => {
    const { bytes, decoded } = roundtrip(m.noisePayload, input, 'noisePayload ' + name)
    check(same(decoded, input), 'noisePayload decodes: ' + name)
    return { name, input: plain(input), encoding: hex(bytes) }
  })
  checkHex(out.noise_payload[2].encoding, '011800000100fefecbd4ef0001', 'HYPERDHT.md 7.4 payload 1')
  checkHex(
    out.noise_payload[3].encoding,
    '0159000000037f0000014ac27f000001fa957f0000014cc27f000001fa957f0000014bc27f000001fa950100fe8fa486e50001037f0000014ac27f0000014cc27f0000014bc2',
    'HYPERDHT.md 7.4 payload 2'
  )
  {
    const bytes = unhex('02ff')
    out.noise_payload_decode_only = [
      { what: 'version other than 1: the rest is not decoded, everything else is reported empty', encoding: hex(bytes), decoded: plain(c.decode(m.noisePayload, bytes)) }
    ]
  }

  // holepunch payload (the plaintext inside PEER_HOLEPUNCH payloads)
  out.holepunch_payload = []
  for (let flags = 0; flags < 64; flags++) {
    const input = {
      error: flags === 63 ? ERROR.ABORTED : 0,
      firewall: flags % 4,
      round: flags,
      connected: (flags & 1) !== 0,
      punching: (flags & 2) !== 0,
      addresses: flags & 4 ? [addr('127.0.0.1', 52016), addr('10.0.0.1', 49737)] : null,
      remoteAddress: flags & 8 ? addr('127.0.0.1', 52016) : null,
      token: flags & 16 ? TOKEN : null,
      remoteToken: flags & 32 ? REFRESH : null
    }
    const { bytes, decoded } = roundtrip(m.holepunchPayload, input, 'holepunchPayload')
    check(same(decoded, input), 'holepunchPayload decodes')
    if ([0, 1, 2, 4, 8, 16, 32, 20, 63].includes(flags)) out.holepunch_payload.push({ flags, input: plain(input), encoding: hex(bytes) })
  }
  {
    const input = { error: 0, firewall: 0, round: 0, connected: false, punching: false, addresses: null, remoteAddress: addr('127.0.0.1', 52016), token: null, remoteToken: null }
    checkHex(hex(c.encode(m.holepunchPayload, input)), '080000007f00000130cb', 'HYPERDHT.md 7.5 holepunch payload')
    const input2 = { error: 0, firewall: FIREWALL.CONSISTENT, round: 0, connected: false, punching: false, addresses: [addr('127.0.0.1', 52016)], remoteAddress: null, token: TOKEN, remoteToken: null }
    check(hex(c.encode(m.holepunchPayload, input2)).startsWith('14000200017f00000130cb'), 'HYPERDHT.md 7.5 server holepunch payload prefix')
  }

  out.plugin_request = [
    { plugin: 'example', version: 1, command: 0, value: null },
    { plugin: 'example', version: 2, command: 300, value: utf8('plugin value') }
  ].map((input) => {
    const { bytes, decoded } = roundtrip(m.pluginRequest, input, 'pluginRequest')
    check(same(decoded, input), 'pluginRequest decodes')
    return { input: plain(input), encoding: hex(bytes) }
  })

  return out
}

// ---------------------------------------------------------------- signatures

// a key pair whose sign() records the signable hyperdht passes in (lib/persistent.js sign() calls
// keyPair.sign(signable) when it exists) and signs it like the plain key pair would
function recordingKeyPair(kp) {
  const rec = { publicKey: kp.publicKey, signables: [] }
  rec.sign = (signable) => {
    rec.signables.push(b4a.from(signable))
    const sig = b4a.alloc(64)
    sodium.crypto_sign_detached(sig, signable, kp.secretKey)
    return sig
  }
  return rec
}

const CACHE_OPTS = {
  records: { maxSize: 1000, maxAge: 0 },
  refreshes: { maxSize: 1000, maxAge: 0 },
  mutables: { maxSize: 1000, maxAge: 0 },
  immutables: { maxSize: 1000, maxAge: 0 },
  bumps: { maxSize: 1000, maxAge: 0 }
}

// Run hyperdht's storing-node handler (Persistent.onannounce / onunannounce) on a stand-in request
// and report whether it accepted (it replies only then).
function storingNodeAccepts(kind, { target, token, id, value, from }) {
  const dht = { id, _router: null }
  dht._router = new Router(dht, { forwards: { maxSize: 1000, maxAge: 0 } })
  const p = new Persistent(dht, CACHE_OPTS)
  let replied = false
  const req = { target, token, value, from, reply: () => (replied = true), error: () => {} }
  if (kind === 'unannounce') {
    p.onunannounce(req)
  } else {
    p.onannounce(req)
  }
  p.destroy()
  return replied
}

function signatures() {
  const keypairs = [
    ['seed_01', SEED_1, KP_1],
    ['seed_02', SEED_2, KP_2],
    ['seed_03', SEED_3, KP_3]
  ].map(([name, seed, kp]) => {
    const hk = hcrypto.keyPair(seed)
    check(b4a.equals(hk.publicKey, kp.publicKey) && b4a.equals(hk.secretKey, kp.secretKey), 'hypercore-crypto.keyPair = HyperDHT.keyPair')
    return { name, seed: hex(seed), public_key: hex(kp.publicKey), secret_key: hex(kp.secretKey), public_key_hash: hex(H(kp.publicKey)) }
  })
  checkHex(keypairs[0].public_key, '8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c', 'HYPERDHT.md 7.4 server pk')
  checkHex(keypairs[1].public_key, '8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394', 'HYPERDHT.md 7.4 client pk')
  checkHex(keypairs[0].public_key_hash, 'c5e21ab1c9f6022d81c3b25e3436cb7f1df77f9652ae3e1310c28e621dd87b4c', 'HYPERDHT.md 7 H(server pk)')

  const storingId = peer.id('127.0.0.1', 49738)
  const from = { id: null, host: '127.0.0.1', port: 50201 }
  const annCases = [
    ['topic, no relays (what hyperdht announce() sends with relayAddresses [])', 'announce', KP_1, TOPIC, [], null, 0],
    ['topic, 3 relays', 'announce', KP_1, TOPIC, RELAYS.slice(0, 3), null, 0],
    ['topic, bump (not part of the signable)', 'announce', KP_1, TOPIC, [], null, BUMP],
    ['topic, refresh', 'announce', KP_1, TOPIC, RELAYS.slice(0, 1), REFRESH, 0],
    ['self-announce: target = H(publicKey), 2 relays', 'announce', KP_1, H(KP_1.publicKey), RELAYS.slice(0, 2), null, 0],
    ['other key pair, topic 2', 'announce', KP_2, TOPIC_2, RELAYS.slice(1, 2), null, 0],
    ['unannounce (hyperdht sends relayAddresses [])', 'unannounce', KP_1, TOPIC, [], null, 0],
    ['unannounce of a self-announce', 'unannounce', KP_1, H(KP_1.publicKey), [], null, 0]
  ]
  const announces = annCases.map(([what, kind, kp, target, relays, refresh, bump]) => {
    const ann = { peer: { publicKey: kp.publicKey, relayAddresses: relays }, refresh, signature: null, bump }
    const rk = recordingKeyPair(kp)
    const signFn = kind === 'announce' ? Persistent.signAnnounce : Persistent.signUnannounce
    const sigRec = signFn(target, TOKEN, storingId, ann, rk)
    const sig = signFn(target, TOKEN, storingId, ann, kp) // the plain key pair path (crypto_sign_detached)
    checkHex(hex(sig), hex(sigRec), 'signature via keyPair.sign equals the secretKey path')
    const signable = rk.signables[0]
    const ns = kind === 'announce' ? NS.ANNOUNCE : NS.UNANNOUNCE
    const peerEnc = c.encode(m.peer, ann.peer)
    const hashInput = b4a.concat([target, storingId, TOKEN, peerEnc, refresh || b4a.alloc(0)])
    checkHex(hex(signable), hex(ns) + hex(H(hashInput)), 'signable = NS || H(target || id || token || peer || refresh)')
    check(sodium.crypto_sign_verify_detached(sig, signable, kp.publicKey), 'announce signature verifies')
    ann.signature = sig
    const value = c.encode(m.announce, ann)
    check(storingNodeAccepts(kind, { target, token: TOKEN, id: storingId, value, from }), `hyperdht Persistent accepts the ${kind}`)
    // and refuses it for another storing node id or token
    check(!storingNodeAccepts(kind, { target, token: REFRESH, id: storingId, value, from }), `Persistent refuses the ${kind} with another token`)
    return {
      what,
      kind,
      namespace: hex(ns),
      public_key: hex(kp.publicKey),
      target: hex(target),
      storing_node_id: hex(storingId),
      token: hex(TOKEN),
      peer: plain(ann.peer),
      peer_encoding: hex(peerEnc),
      refresh: hex(refresh),
      bump,
      hash_input: hex(hashInput),
      hash: hex(H(hashInput)),
      signable: hex(signable),
      signature: hex(sig),
      announce_value: hex(value)
    }
  })

  const mutCases = [
    [KP_1, 0, b4a.alloc(0)],
    [KP_1, 1, utf8('hello')],
    [KP_1, 253, seq(300)],
    [KP_2, 4294967296, utf8('peersockets mutable')]
  ]
  const mutables = mutCases.map(([kp, s, value]) => {
    const rk = recordingKeyPair(kp)
    const sig = Persistent.signMutable(s, value, rk)
    checkHex(hex(Persistent.signMutable(s, value, kp)), hex(sig), 'mutable signature via both key pair forms')
    const signable = rk.signables[0]
    const msig = c.encode(m.mutableSignable, { seq: s, value })
    checkHex(hex(signable), hex(NS.MUTABLE_PUT) + hex(H(msig)), 'mutable signable = NS_MUTABLE_PUT || H(uint seq || buffer value)')
    check(Persistent.verifyMutable(sig, s, value, kp.publicKey), 'verifyMutable accepts')
    check(!Persistent.verifyMutable(sig, s + 1, value, kp.publicKey), 'verifyMutable refuses another seq')
    return {
      public_key: hex(kp.publicKey),
      target: hex(H(kp.publicKey)),
      seq: s,
      value: hex(value),
      mutable_signable_encoding: hex(msig),
      hash: hex(H(msig)),
      signable: hex(signable),
      signature: hex(sig),
      put_request: hex(c.encode(m.mutablePutRequest, { publicKey: kp.publicKey, seq: s, value, signature: sig })),
      get_response: hex(c.encode(m.mutableGetResponse, { seq: s, value, signature: sig }))
    }
  })

  return {
    what:
      'hyperdht lib/persistent.js: Persistent.signAnnounce / signUnannounce sign annSignable(target, token, id, ann, ns) ' +
      '= ns || BLAKE2b-256(target || id || token || c.encode(peer, ann.peer) || (ann.refresh or nothing)) with Ed25519 ' +
      '(crypto_sign_detached); id is the storing node id and token the token that node gave the signer. ' +
      'Persistent.signMutable(seq, value) signs NS_MUTABLE_PUT || BLAKE2b-256(c.encode(mutableSignable, {seq, value})). ' +
      'Key pairs: HyperDHT.keyPair(seed) = crypto_sign_seed_keypair (same as hypercore-crypto.keyPair(seed)). Each ' +
      'announce is checked by running hyperdht Persistent.onannounce/onunannounce on it (accepted with this token, ' +
      'refused with another).',
    keypairs,
    announce: announces,
    mutable: mutables
  }
}

// ---------------------------------------------------------------- in-memory network (rpc_messages)

class MemNet {
  constructor() {
    this.sockets = new Map() // "host:port" -> socket
    this.queue = []
    this.log = []
    this.nodes = []
  }

  socket(node, role, address) {
    const net = this
    const s = {
      node,
      role,
      label: `${node.name}.${role}`,
      addr: address,
      trySend(buffer, port, host, ttl) {
        net.queue.push({ src: s, dst: { host, port }, ttl: ttl || 0, buf: b4a.from(buffer) })
      },
      address() {
        return { host: address.host, family: 4, port: address.port }
      },
      close() {}
    }
    this.sockets.set(addrStr(address), s)
    return s
  }

  node(name, { server, client, persistent, firewalled, secrets, tableId = null, tableNodes = [] }) {
    const node = {
      name,
      ephemeral: !persistent,
      firewalled,
      destroyed: false,
      maxPingDelay: DHT.DEFAULTS.maxPingDelay,
      _checks: 0,
      _tick: 0,
      _sendDownHints: true,
      _pendingTimers: new Set(),
      // dht-rpc DHT methods that the request handler uses, run on this node
      _onrequest: DHT.prototype._onrequest,
      _ondelayedping: DHT.prototype._ondelayedping,
      _request: DHT.prototype._request,
      _check: DHT.prototype._check,
      _addNodeFromNetwork() {}, // routing-table upkeep: not part of the wire
      _removeStaleNode() {},
      _removeNode() {},
      // hyperdht's handler for non-internal commands
      onrequest: HyperDHT.prototype.onrequest
    }
    Object.defineProperty(node, 'id', Object.getOwnPropertyDescriptor(DHT.prototype, 'id'))
    node.table = new Table(persistent ? peer.id(server.host, server.port) : tableId)
    for (const n of tableNodes) {
      node.table.add({ id: peer.id(n.host, n.port), host: n.host, port: n.port, token: null, to: null, sampled: 0, added: 0, pinged: 0, seen: 0, downHints: 0, prev: null, next: null })
    }
    node.io = new IO(node.table, FAKE_UDX, { firewalled, onrequest: (req, external) => node._onrequest(req, external) })
    node.io.ephemeral = !persistent
    const sec = b4a.concat(secrets)
    node.io._secrets = [sec.subarray(0, 32), sec.subarray(32, 64)]
    node.io.serverSocket = this.socket(node, 'server', server)
    node.io.clientSocket = this.socket(node, 'client', client)
    node._router = new Router(node, { forwards: { maxSize: 1000, maxAge: 0 } })
    node._persistent = persistent ? new Persistent(node, CACHE_OPTS) : null
    this.nodes.push(node)
    return node
  }

  // a request made the way dht-rpc makes them (IO.createRequest + Request.send), with a chosen tid
  request(node, tid, to, { token = null, internal = false, command, target = null, value = null }) {
    node.io._tid = tid
    const req = node.io.createRequest({ id: null, host: to.host, port: to.port }, token, internal, command, target, value, null, 0)
    req.res = null
    req.onresponse = (res) => {
      req.res = res
    }
    req.onerror = () => {}
    req.send(true)
    return req
  }

  // deliver queued datagrams (and whatever they cause) until nothing moves
  async pump() {
    for (;;) {
      while (this.queue.length) {
        const d = this.queue.shift()
        this.log.push(d)
        const to = this.sockets.get(addrStr(d.dst))
        d.to = to || null
        if (to) to.node.io.onmessage(to, d.buf, { host: d.src.addr.host, port: d.src.addr.port })
        await settle()
      }
      await settle()
      if (!this.queue.length) return
    }
  }

  // stop retry timers of requests that got no answer
  quiet() {
    for (const node of this.nodes) {
      for (const req of node.io.inflight) {
        if (req._timeout) clearTimeout(req._timeout)
        req._timeout = null
      }
      node.io.inflight.length = 0
    }
  }

  take() {
    const tidCommand = new Map()
    const out = this.log.map((d) => {
      const src = d.src.addr
      let command = null
      if (d.buf[0] === 0x13 && d.buf.byteLength >= 4) {
        const state = { start: 1, end: d.buf.byteLength, buffer: d.buf }
        c.uint.decode(state) // flags
        const t = c.uint16.decode(state)
        if (tidCommand.has(t)) command = tidCommand.get(t)
      }
      const decoded = decodeDatagram(d.buf, src, command)
      if (decoded.type === 'request' && !decoded.internal) tidCommand.set(decoded.tid, decoded.command)
      const e = { from: d.src.label, from_addr: addrStr(src), to: d.to ? d.to.label : null, to_addr: addrStr(d.dst) }
      if (d.ttl) e.ttl = d.ttl
      e.hex = hex(d.buf)
      e.decoded = decoded
      return e
    })
    this.log = []
    return out
  }
}

async function rpcMessages() {
  const net = new MemNet()
  const secretsOf = (b) => [fill(32, b), fill(32, b + 1)]
  const B_ADDR = addr('127.0.0.1', 49738)
  const P_ADDR = addr('127.0.0.1', 49739)
  const TABLE_ONLY = [addr('127.0.0.1', 49740), addr('127.0.0.1', 49741), addr('10.0.0.1', 49737)]
  // B: a persistent (storing) node, not firewalled; its table holds P and three nodes that are not on the memnet
  const B = net.node('B', { server: B_ADDR, client: addr('127.0.0.1', 40738), persistent: true, firewalled: false, secrets: secretsOf(0xb0), tableNodes: [P_ADDR, ...TABLE_ONLY] })
  // P: another persistent node (requests from its server socket carry its id)
  const P = net.node('P', { server: P_ADDR, client: addr('127.0.0.1', 40739), persistent: true, firewalled: false, secrets: secretsOf(0xc0), tableNodes: [B_ADDR] })
  // E: an ephemeral node that is not firewalled (like the first node of a testnet)
  const E = net.node('E', { server: addr('127.0.0.1', 49737), client: addr('127.0.0.1', 40737), persistent: false, firewalled: false, secrets: secretsOf(0xe0), tableId: fill(32, 0xee), tableNodes: [B_ADDR, P_ADDR] })
  // A: an ephemeral, firewalled client (sends from its client socket)
  const A = net.node('A', { server: addr('127.0.0.1', 50100), client: addr('127.0.0.1', 50101), persistent: false, firewalled: true, secrets: secretsOf(0xa0), tableId: fill(32, 0xaa) })
  // S: an ephemeral, firewalled server that announces itself and answers handshakes/holepunches
  const S = net.node('S', { server: addr('127.0.0.1', 50200), client: addr('127.0.0.1', 50201), persistent: false, firewalled: true, secrets: secretsOf(0x50), tableId: fill(32, 0x55) })

  const nodes = net.nodes.map((n) => ({
    name: n.name,
    server: addrStr(n.io.serverSocket.addr),
    client: addrStr(n.io.clientSocket.addr),
    persistent: !n.ephemeral,
    firewalled: n.firewalled,
    sends_from: n.firewalled ? 'client' : 'server',
    id: hex(n.id),
    secrets: n.io._secrets.map(hex),
    table: n.table.toArray().map((x) => addrStr(x))
  }))

  // ---- single requests, every flag combination (IO.createRequest + send, decoded by Request.decode)
  const reqMatrix = []
  for (let flags = 0; flags < 32; flags++) {
    const sender = flags & 1 ? P : A
    const req = net.request(sender, 0x0100 + flags, B_ADDR, {
      token: flags & 2 ? TOKEN : null,
      internal: (flags & 4) !== 0,
      command: RPC_COMMANDS.FIND_NODE,
      target: flags & 8 ? TARGET : null,
      value: flags & 16 ? seq(5, 0x76) : null
    })
    net.quiet()
    const d = net.queue.shift()
    check(d.buf[1] === flags, 'request flags byte')
    const src = d.src.addr
    const decoded = decodeDatagram(d.buf, src)
    check(decoded.tid === req.tid && decoded.command === 2 && (flags & 1 ? decoded.id_valid : decoded.id === null), 'request decodes')
    reqMatrix.push({ flags, flag_names: flagNames(flags, REQ_FLAG_NAMES), from: d.src.label, from_addr: addrStr(src), hex: hex(d.buf), decoded })
  }

  // ---- named requests (values built the way dht-rpc / hyperdht build them)
  const u16 = (n) => c.encode(c.uint16, n)
  const u32 = (n) => c.encode(c.uint32, n)
  const namedReqs = [
    ['ping', 'DHT.ping(): internal PING, no value', A, { internal: true, command: RPC_COMMANDS.PING }],
    ['ping_persistent', 'PING from a persistent node\'s server socket: carries its id', P, { internal: true, command: RPC_COMMANDS.PING }],
    ['ping_size', 'DHT.ping(to, {size: 8}): value = 8 zero bytes', A, { internal: true, command: RPC_COMMANDS.PING, value: b4a.alloc(8) }],
    ['ping_nat', 'PING_NAT: value = u16 port of the sender\'s server socket', A, { internal: true, command: RPC_COMMANDS.PING_NAT, value: u16(50100) }],
    ['find_node', 'FIND_NODE: target, no value', A, { internal: true, command: RPC_COMMANDS.FIND_NODE, target: TARGET }],
    ['down_hint', 'DOWN_HINT: value = 6-byte address of a node found dead (lib/query.js _downHint)', A, { internal: true, command: RPC_COMMANDS.DOWN_HINT, value: c.encode(peer.ipv4, addr('127.0.0.1', 49740)) }],
    ['delayed_ping', 'DHT.delayedPing(to, 5000): value = u32 delay in ms', A, { internal: true, command: RPC_COMMANDS.DELAYED_PING, value: u32(5000) }],
    ['command_253', 'a command number that takes a 3-byte uint (fd fd 00)', A, { internal: false, command: 253, target: TARGET }],
    ['empty_value', 'value present but empty: flag 16 with a zero length', A, { internal: false, command: COMMANDS.IMMUTABLE_PUT, token: TOKEN, target: H(b4a.alloc(0)), value: b4a.alloc(0) }],
    ['lookup', 'hyperdht lookup(topic): LOOKUP, target = topic', A, { internal: false, command: COMMANDS.LOOKUP, target: TOPIC }],
    ['mutable_get', 'hyperdht mutableGet(): MUTABLE_GET, target H(pk), value uint seq', A, { internal: false, command: COMMANDS.MUTABLE_GET, target: H(KP_1.publicKey), value: c.encode(c.uint, 0) }]
  ]
  const requests = namedReqs.map(([name, what, sender, opts], i) => {
    net.request(sender, 0x2000 + i, B_ADDR, opts)
    net.quiet()
    const d = net.queue.shift()
    return { name, what, from: d.src.label, from_addr: addrStr(d.src.addr), to_addr: addrStr(d.dst), hex: hex(d.buf), decoded: decodeDatagram(d.buf, d.src.addr) }
  })
  check(net.queue.length === 0, 'nothing else queued')

  // ---- replies, every flag combination (Request.sendReply on a decoded request)
  const resMatrix = []
  for (let flags = 0; flags < 32; flags++) {
    const responder = flags & 1 ? B : E
    const reqBuf = (() => {
      net.request(A, 0x0300 + flags, responder.io.serverSocket.addr, { internal: true, command: 7, target: flags & 4 ? TARGET : null })
      net.quiet()
      return net.queue.shift().buf
    })()
    const from = { id: null, host: '127.0.0.1', port: 50101 }
    const req = RequestClass.decode(responder.io, responder.io.serverSocket, from, { start: 1, end: reqBuf.byteLength, buffer: reqBuf })
    req.sendReply(flags & 8 ? 1 : 0, flags & 16 ? seq(5, 0x76) : null, (flags & 2) !== 0, (flags & 4) !== 0)
    const d = net.queue.shift()
    check(d.buf[1] === flags, `reply flags byte ${flags}: got ${d.buf[1]}`)
    const decoded = decodeDatagram(d.buf, d.src.addr)
    check(decoded.tid === 0x0300 + flags && (flags & 1 ? decoded.id_valid : decoded.id === null), 'reply decodes')
    resMatrix.push({ flags, flag_names: flagNames(flags, RES_FLAG_NAMES), from: d.src.label, from_addr: addrStr(d.src.addr), to_addr: addrStr(d.dst), hex: hex(d.buf), decoded })
  }
  check(net.queue.length === 0, 'nothing else queued')

  // ---- exchanges on the memnet
  const exchanges = []
  let tid = 0x4000
  const ex = async (name, what, body) => {
    await body()
    await net.pump()
    net.quiet()
    const datagrams = net.take()
    exchanges.push({ name, what, datagrams })
    return datagrams
  }
  const expect = (dg, shape, name) => {
    check(dg.length === shape.length, `${name}: ${dg.length} datagrams, expected ${shape.length}`)
    dg.forEach((d, i) => {
      const [from, to, type, flags] = shape[i]
      check(d.from === from && d.to === to && d.decoded.type === type && d.decoded.flags === flags, `${name}: datagram ${i} is ${from} -> ${to} ${type} flags ${flags}, got ${d.from} -> ${d.to} ${d.decoded.type} ${d.decoded.flags}`)
      if (d.decoded.id !== null && d.decoded.id !== undefined) check(d.decoded.id_valid, `${name}: datagram ${i} id = H(source)`)
    })
  }
  const tokenFor = (node, host) => node.io.token({ host, port: 0 }, 1)

  let dg
  dg = await ex('ping', 'A (ephemeral, firewalled) pings B (persistent): B answers from its server socket with its id.', async () => {
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.PING })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x04], ['B.server', 'A.client', 'response', 0x01]], 'ping')

  dg = await ex('ping_persistent', 'P (persistent, not firewalled) pings B from its server socket: both carry ids.', async () => {
    net.request(P, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.PING })
  })
  expect(dg, [['P.server', 'B.server', 'request', 0x05], ['B.server', 'P.server', 'response', 0x01]], 'ping_persistent')

  dg = await ex('ping_ephemeral_responder', 'A pings E (ephemeral): the reply has no id.', async () => {
    net.request(A, tid++, E.io.serverSocket.addr, { internal: true, command: RPC_COMMANDS.PING })
  })
  expect(dg, [['A.client', 'E.server', 'request', 0x04], ['E.server', 'A.client', 'response', 0x00]], 'ping_ephemeral_responder')

  dg = await ex('ping_with_value', 'PING with an 8-byte value (DHT.ping size option): the reply is still empty.', async () => {
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.PING, value: b4a.alloc(8) })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x14], ['B.server', 'A.client', 'response', 0x01]], 'ping_with_value')

  dg = await ex('ping_nat', 'PING_NAT with value = u16 50100 (A\'s server port): B sends the empty reply to 127.0.0.1:50100 (not to the source port 50101), and its "to" says 50100.', async () => {
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.PING_NAT, value: u16(50100) })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x14], ['B.server', 'A.server', 'response', 0x01]], 'ping_nat')
  check(dg[1].decoded.to.port === 50100, 'ping_nat reply to = 50100')

  dg = await ex('ping_nat_invalid', 'PING_NAT with port 0, then with a 1-byte value: no reply to either.', async () => {
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.PING_NAT, value: u16(0) })
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.PING_NAT, value: b4a.from([0x01]) })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x14], ['A.client', 'B.server', 'request', 0x14]], 'ping_nat_invalid')

  dg = await ex('find_node', 'FIND_NODE for TARGET: B answers with the closest nodes of its routing table (kademlia-routing-table closest(target), k=20), no token.', async () => {
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.FIND_NODE, target: TARGET })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x0c], ['B.server', 'A.client', 'response', 0x05]], 'find_node')
  check(dg[1].decoded.closer_nodes.length === 4, 'find_node: 4 closer nodes')

  dg = await ex('find_node_persistent', 'FIND_NODE from P (persistent) for its own id, as a bootstrap query does: the request carries P\'s id, and B\'s closer nodes include P itself (the querier skips its own id).', async () => {
    net.request(P, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.FIND_NODE, target: P.id })
  })
  expect(dg, [['P.server', 'B.server', 'request', 0x0d], ['B.server', 'P.server', 'response', 0x05]], 'find_node_persistent')
  check(dg[1].decoded.closer_nodes.some((n) => n.port === 49739), 'find_node_persistent: P among the closer nodes')

  dg = await ex('find_node_no_target', 'FIND_NODE without a target: no reply at all.', async () => {
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.FIND_NODE })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x04]], 'find_node_no_target')

  dg = await ex('down_hint', 'DOWN_HINT naming 127.0.0.1:1 (not in B\'s table): B answers with an empty reply and does nothing else.', async () => {
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.DOWN_HINT, value: c.encode(peer.ipv4, addr('127.0.0.1', 1)) })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x14], ['B.server', 'A.client', 'response', 0x01]], 'down_hint')

  B.io._tid = 0x7000
  dg = await ex('down_hint_known', 'DOWN_HINT naming 127.0.0.1:49740, which is in B\'s table: B replies, then checks that node with a PING of its own (tid 0x7000 here) from its server socket. Nothing listens there on the memnet.', async () => {
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.DOWN_HINT, value: c.encode(peer.ipv4, addr('127.0.0.1', 49740)) })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x14], ['B.server', null, 'request', 0x05], ['B.server', 'A.client', 'response', 0x01]], 'down_hint_known')
  check(dg[1].decoded.command === RPC_COMMANDS.PING && dg[1].to_addr === '127.0.0.1:49740', 'down_hint_known: B pings the hinted node')

  dg = await ex('delayed_ping', 'DELAYED_PING with value = u32 30: B answers (empty) 30 ms later. A value above 10000 (maxPingDelay) gets no reply.', async () => {
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.DELAYED_PING, value: u32(30) })
    await net.pump()
    await sleep(80)
    await net.pump()
    net.request(A, tid++, B_ADDR, { internal: true, command: RPC_COMMANDS.DELAYED_PING, value: u32(10001) })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x14], ['B.server', 'A.client', 'response', 0x01], ['A.client', 'B.server', 'request', 0x14]], 'delayed_ping')

  dg = await ex('unknown_internal', 'Internal command 7 (unknown) with a target: error 1 (UNKNOWN_COMMAND) with closer nodes, no token; without a target: error 1 only.', async () => {
    net.request(A, tid++, B_ADDR, { internal: true, command: 7, target: TARGET })
    await net.pump()
    net.request(A, tid++, B_ADDR, { internal: true, command: 7 })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x0c], ['B.server', 'A.client', 'response', 0x0d], ['A.client', 'B.server', 'request', 0x04], ['B.server', 'A.client', 'response', 0x09]], 'unknown_internal')

  dg = await ex('hyperdht_command_on_ephemeral', 'LOOKUP to E (ephemeral: hyperdht has no storage there): error 1 with closer nodes, no id, no token (HYPERDHT.md 7.3 "ephemeral boot0").', async () => {
    net.request(A, tid++, E.io.serverSocket.addr, { command: COMMANDS.LOOKUP, target: TOPIC })
  })
  expect(dg, [['A.client', 'E.server', 'request', 0x08], ['E.server', 'A.client', 'response', 0x0c]], 'hyperdht_command_on_ephemeral')

  dg = await ex('invalid_token', 'ANNOUNCE with a token B never issued: IO.onmessage answers error 2 (INVALID_TOKEN) with a fresh token and closer nodes, and the handler never runs.', async () => {
    net.request(A, tid++, B_ADDR, { command: COMMANDS.ANNOUNCE, token: TOKEN, target: TOPIC, value: b4a.from([0x00]) })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x1a], ['B.server', 'A.client', 'response', 0x0f]], 'invalid_token')
  checkHex(dg[1].decoded.token, hex(tokenFor(B, '127.0.0.1')), 'invalid_token: fresh token = token(host, 1)')

  dg = await ex('lookup_empty', 'LOOKUP of a topic B stores nothing for: reply with id, token and closer nodes, no value.', async () => {
    net.request(A, tid++, B_ADDR, { command: COMMANDS.LOOKUP, target: TOPIC })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x08], ['B.server', 'A.client', 'response', 0x07]], 'lookup_empty')

  // S announces KP_1 on TOPIC: LOOKUP for the token, then ANNOUNCE signed for B's id and that token
  const announceVia = async (kind, kp, target, relays, bump = 0) => {
    const look = net.request(S, tid++, B_ADDR, { command: COMMANDS.LOOKUP, target })
    await net.pump()
    check(look.res && look.res.token, 'lookup reply has a token')
    const ann = { peer: { publicKey: kp.publicKey, relayAddresses: relays }, refresh: null, signature: null, bump }
    const sign = kind === 'announce' ? Persistent.signAnnounce : Persistent.signUnannounce
    ann.signature = sign(target, look.res.token, look.res.from.id, ann, kp)
    const command = kind === 'announce' ? COMMANDS.ANNOUNCE : COMMANDS.UNANNOUNCE
    return net.request(S, tid++, B_ADDR, { command, token: look.res.token, target, value: c.encode(m.announce, ann) })
  }

  dg = await ex('announce', 'S announces KP_1 on TOPIC with no relay addresses, as hyperdht announce() does: LOOKUP (B\'s reply carries the token), then ANNOUNCE with that token, signed over B\'s id and the token (Persistent.signAnnounce). B stores the record and answers with its id only.', async () => {
    await announceVia('announce', KP_1, TOPIC, [])
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x08], ['B.server', 'S.client', 'response', 0x07], ['S.client', 'B.server', 'request', 0x1a], ['B.server', 'S.client', 'response', 0x01]], 'announce')

  dg = await ex('lookup_found', 'LOOKUP of TOPIC after the announce: the value is a lookup reply with S\'s record and bump 0.', async () => {
    net.request(A, tid++, B_ADDR, { command: COMMANDS.LOOKUP, target: TOPIC })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x08], ['B.server', 'A.client', 'response', 0x17]], 'lookup_found')
  check(dg[1].decoded.value_decoded.peers.length === 1 && dg[1].decoded.value_decoded.peers[0].publicKey === hex(KP_1.publicKey), 'lookup_found: the record')

  dg = await ex('announce_bump', 'S announces KP_2 on TOPIC_2 with bump 5 and one relay address; a LOOKUP then returns bump 5.', async () => {
    await announceVia('announce', KP_2, TOPIC_2, [B_ADDR], 5)
    await net.pump()
    net.request(A, tid++, B_ADDR, { command: COMMANDS.LOOKUP, target: TOPIC_2 })
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x08], ['B.server', 'S.client', 'response', 0x07], ['S.client', 'B.server', 'request', 0x1a], ['B.server', 'S.client', 'response', 0x01], ['A.client', 'B.server', 'request', 0x08], ['B.server', 'A.client', 'response', 0x17]], 'announce_bump')
  check(dg[5].decoded.value_decoded.bump === 5, 'announce_bump: bump 5')

  dg = await ex('announce_no_token', 'ANNOUNCE without a token: no reply (Persistent.onannounce returns).', async () => {
    const ann = { peer: { publicKey: KP_1.publicKey, relayAddresses: [] }, refresh: null, signature: FAKE_SIGNATURE, bump: 0 }
    net.request(S, tid++, B_ADDR, { command: COMMANDS.ANNOUNCE, target: TOPIC, value: c.encode(m.announce, ann) })
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x18]], 'announce_no_token')

  dg = await ex('announce_bad_signature', 'ANNOUNCE with a valid token but a signature over another token: no reply.', async () => {
    const ann = { peer: { publicKey: KP_1.publicKey, relayAddresses: [] }, refresh: null, signature: null, bump: 0 }
    ann.signature = Persistent.signAnnounce(TOPIC, TOKEN, B.id, ann, KP_1)
    net.request(S, tid++, B_ADDR, { command: COMMANDS.ANNOUNCE, token: tokenFor(B, '127.0.0.1'), target: TOPIC, value: c.encode(m.announce, ann) })
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x1a]], 'announce_bad_signature')

  dg = await ex('unannounce', 'S unannounces KP_1 from TOPIC: LOOKUP (finds the record, gets the token), UNANNOUNCE signed with NS_UNANNOUNCE, relayAddresses [] (Persistent.signUnannounce); reply id only. A LOOKUP afterwards has no value.', async () => {
    await announceVia('unannounce', KP_1, TOPIC, [])
    await net.pump()
    net.request(A, tid++, B_ADDR, { command: COMMANDS.LOOKUP, target: TOPIC })
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x08], ['B.server', 'S.client', 'response', 0x17], ['S.client', 'B.server', 'request', 0x1a], ['B.server', 'S.client', 'response', 0x01], ['A.client', 'B.server', 'request', 0x08], ['B.server', 'A.client', 'response', 0x07]], 'unannounce')

  const S_TARGET = H(KP_1.publicKey)
  dg = await ex('self_announce', 'S announces KP_1 on H(KP_1.publicKey) with relay address B (what a listening hyperdht server does): B keeps a forward {relay: S\'s source address 127.0.0.1:50201, record}.', async () => {
    await announceVia('announce', KP_1, S_TARGET, [B_ADDR])
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x08], ['B.server', 'S.client', 'response', 0x07], ['S.client', 'B.server', 'request', 0x1a], ['B.server', 'S.client', 'response', 0x01]], 'self_announce')

  dg = await ex('find_peer', 'FIND_PEER for H(KP_1.publicKey): the value is the forwarded peer record. A LOOKUP of the same target returns it too (the forward\'s record is added to the records).', async () => {
    net.request(A, tid++, B_ADDR, { command: COMMANDS.FIND_PEER, target: S_TARGET })
    await net.pump()
    net.request(A, tid++, B_ADDR, { command: COMMANDS.LOOKUP, target: S_TARGET })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x08], ['B.server', 'A.client', 'response', 0x17], ['A.client', 'B.server', 'request', 0x08], ['B.server', 'A.client', 'response', 0x17]], 'find_peer')

  // S listens: its own router knows the server (hyperdht lib/server.js sets {relay: null, record,
  // onpeerhandshake, onpeerholepunch}); the Noise / holepunch work is replaced by fixed answers.
  const SERVER_NOISE = seq(24, 0x60)
  const SERVER_HP_PAYLOAD = seq(20, 0x90)
  S._router.set(S_TARGET, {
    relay: null,
    record: c.encode(m.peer, { publicKey: KP_1.publicKey, relayAddresses: [B_ADDR] }),
    onpeerhandshake: async () => ({ noise: SERVER_NOISE, socket: S.io.clientSocket }),
    onpeerholepunch: async () => ({ payload: SERVER_HP_PAYLOAD, socket: S.io.clientSocket })
  })

  dg = await ex('peer_handshake_no_forward', 'PEER_HANDSHAKE FROM_CLIENT for a key B has no forward for: an empty reply with closer nodes (no token) "to help the user route".', async () => {
    net.request(A, tid++, B_ADDR, { command: COMMANDS.PEER_HANDSHAKE, target: H(KP_3.publicKey), value: c.encode(m.handshake, { mode: 0, noise: seq(12, 0x30), peerAddress: null, relayAddress: null }) })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x18], ['B.server', 'A.client', 'response', 0x05]], 'peer_handshake_no_forward')

  dg = await ex('peer_handshake', 'PEER_HANDSHAKE routed by hyperdht\'s Router (HYPERDHT.md 3.3, 7.4): A -> B FROM_CLIENT; B relays FROM_RELAY (same tid, B\'s id, peerAddress = A) to the forward\'s relay address (S); S\'s server answer goes back FROM_SERVER (same tid, from S\'s socket); B sends the REPLY (peerAddress = S) to A. The noise bytes are placeholders.', async () => {
    net.request(A, tid++, B_ADDR, { command: COMMANDS.PEER_HANDSHAKE, target: S_TARGET, value: c.encode(m.handshake, { mode: 0, noise: seq(12, 0x30), peerAddress: null, relayAddress: null }) })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x18], ['B.server', 'S.client', 'request', 0x19], ['S.client', 'B.server', 'request', 0x18], ['B.server', 'A.client', 'response', 0x11]], 'peer_handshake')
  check(dg.every((d) => d.decoded.tid === dg[0].decoded.tid), 'peer_handshake: one tid throughout')

  dg = await ex('peer_holepunch', 'PEER_HOLEPUNCH routed the same way: FROM_CLIENT (id 0) A -> B, FROM_RELAY B -> S (peerAddress = A), FROM_SERVER S -> B (id 0), REPLY B -> A (peerAddress = S). The payload bytes are placeholders.', async () => {
    net.request(A, tid++, B_ADDR, { command: COMMANDS.PEER_HOLEPUNCH, target: S_TARGET, value: c.encode(m.holepunch, { mode: 0, id: 0, payload: seq(20, 0x70), peerAddress: null }) })
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x18], ['B.server', 'S.client', 'request', 0x19], ['S.client', 'B.server', 'request', 0x18], ['B.server', 'A.client', 'response', 0x11]], 'peer_holepunch')

  // mutable / immutable storage
  const putVia = async (kp, s, value) => {
    const target = H(kp.publicKey)
    const get = net.request(S, tid++, B_ADDR, { command: COMMANDS.MUTABLE_GET, target, value: c.encode(c.uint, 0) })
    await net.pump()
    const signature = Persistent.signMutable(s, value, kp)
    net.request(S, tid++, B_ADDR, { command: COMMANDS.MUTABLE_PUT, token: get.res.token, target, value: c.encode(m.mutablePutRequest, { publicKey: kp.publicKey, seq: s, value, signature }) })
  }
  dg = await ex('mutable_put', 'hyperdht mutablePut(KP_2, "peersockets mutable", {seq: 2}): MUTABLE_GET seq 0 for the token, then MUTABLE_PUT; the reply carries id, token and closer nodes, no value.', async () => {
    await putVia(KP_2, 2, utf8('peersockets mutable'))
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x18], ['B.server', 'S.client', 'response', 0x07], ['S.client', 'B.server', 'request', 0x1a], ['B.server', 'S.client', 'response', 0x07]], 'mutable_put')

  dg = await ex('mutable_get', 'MUTABLE_GET seq 0 and seq 2: the value is the stored get response; MUTABLE_GET seq 3: no value.', async () => {
    for (const s of [0, 2, 3]) {
      net.request(A, tid++, B_ADDR, { command: COMMANDS.MUTABLE_GET, target: H(KP_2.publicKey), value: c.encode(c.uint, s) })
      await net.pump()
    }
  })
  expect(dg, [['A.client', 'B.server', 'request', 0x18], ['B.server', 'A.client', 'response', 0x17], ['A.client', 'B.server', 'request', 0x18], ['B.server', 'A.client', 'response', 0x17], ['A.client', 'B.server', 'request', 0x18], ['B.server', 'A.client', 'response', 0x07]], 'mutable_get')

  dg = await ex('mutable_put_seq_reused', 'MUTABLE_PUT of seq 2 with another value: error 16 (SEQ_REUSED), with closer nodes, no token.', async () => {
    await putVia(KP_2, 2, utf8('another value'))
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x18], ['B.server', 'S.client', 'response', 0x17], ['S.client', 'B.server', 'request', 0x1a], ['B.server', 'S.client', 'response', 0x0d]], 'mutable_put_seq_reused')
  check(dg[3].decoded.error === ERROR.SEQ_REUSED, 'error 16')

  dg = await ex('mutable_put_seq_too_low', 'MUTABLE_PUT of seq 1: error 17 (SEQ_TOO_LOW).', async () => {
    await putVia(KP_2, 1, utf8('older'))
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x18], ['B.server', 'S.client', 'response', 0x17], ['S.client', 'B.server', 'request', 0x1a], ['B.server', 'S.client', 'response', 0x0d]], 'mutable_put_seq_too_low')
  check(dg[3].decoded.error === ERROR.SEQ_TOO_LOW, 'error 17')

  const IMM = utf8('peersockets immutable')
  dg = await ex('immutable_put_get', 'hyperdht immutablePut("peersockets immutable"): IMMUTABLE_GET H(value) for the token (no value yet), IMMUTABLE_PUT (reply id, token, closer nodes); then IMMUTABLE_GET returns the value.', async () => {
    const get = net.request(S, tid++, B_ADDR, { command: COMMANDS.IMMUTABLE_GET, target: H(IMM) })
    await net.pump()
    net.request(S, tid++, B_ADDR, { command: COMMANDS.IMMUTABLE_PUT, token: get.res.token, target: H(IMM), value: IMM })
    await net.pump()
    net.request(A, tid++, B_ADDR, { command: COMMANDS.IMMUTABLE_GET, target: H(IMM) })
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x08], ['B.server', 'S.client', 'response', 0x07], ['S.client', 'B.server', 'request', 0x1a], ['B.server', 'S.client', 'response', 0x07], ['A.client', 'B.server', 'request', 0x08], ['B.server', 'A.client', 'response', 0x17]], 'immutable_put_get')
  checkHex(dg[5].decoded.value, hex(IMM), 'immutable value')

  dg = await ex('immutable_put_wrong_target', 'IMMUTABLE_PUT whose target is not H(value): no reply.', async () => {
    net.request(S, tid++, B_ADDR, { command: COMMANDS.IMMUTABLE_PUT, token: tokenFor(B, '127.0.0.1'), target: TARGET, value: IMM })
  })
  expect(dg, [['S.client', 'B.server', 'request', 0x1a]], 'immutable_put_wrong_target')

  // ---- what IO.onmessage drops without a trace
  const valid = b4a.from(requests[0].hex, 'hex') // A's PING
  const dropped = [
    ['one byte', b4a.from([0x03]), 50101],
    ['source port 0', b4a.from(requests[0].hex, 'hex'), 0],
    ['first byte 0x00 (a holepunch probe is the single byte 00)', b4a.from([0x00, 0x00]), 50101],
    ['first byte 0x23 (version 3, type 2)', b4a.concat([b4a.from([0x23]), valid.subarray(1)]), 50101],
    ['first byte 0x02 (version 2)', b4a.concat([b4a.from([0x02]), valid.subarray(1)]), 50101],
    ['UDX packet (first byte 0xff)', unhex('ff0101001122334400004000000000000000000068656c6c6f'), 50101],
    ['truncated request (target flag set, 31 of 32 target bytes)', b4a.from(requests[4].hex, 'hex').subarray(0, 42), 50101],
    ['truncated response (1 of 6 "to" bytes)', unhex('1300e803' + '7f'), 50101]
  ].map(([what, buf, port]) => {
    let handled = false
    const onrequest = B.io.onrequest
    B.io.onrequest = () => (handled = true)
    B.io.onmessage(B.io.serverSocket, buf, { host: '127.0.0.1', port })
    B.io.onrequest = onrequest
    check(!handled && net.queue.length === 0, 'dropped: ' + what)
    if (buf[0] === 0x13) check(rpcDecodeResponse(buf, addr('127.0.0.1', port)) === null, 'dropped: ' + what)
    return { what, hex: hex(buf), source_port: port }
  })
  check(B.io.inflight.length === 0, 'no inflight left')
  const accepted = []
  {
    // trailing bytes are ignored; unknown flag bits too
    const r = b4a.from(requests[4].hex, 'hex')
    const withTrailer = b4a.concat([r, unhex('deadbeef')])
    const d1 = decodeDatagram(withTrailer, addr('127.0.0.1', 50101))
    check(d1.type === 'request' && d1.target === hex(TARGET) && d1.value === null, 'trailing bytes ignored')
    accepted.push({ what: 'a FIND_NODE request with 4 trailing bytes: decoded as if they were not there', hex: hex(withTrailer), decoded: d1 })
    const withFlag = b4a.from(r)
    withFlag[1] |= 0x20
    const d2 = decodeDatagram(withFlag, addr('127.0.0.1', 50101))
    check(d2.type === 'request' && d2.target === hex(TARGET), 'unknown flag bit ignored')
    accepted.push({ what: 'the same request with flag bit 0x20 set: the unknown bit is ignored', hex: hex(withFlag), decoded: d2 })
    const fakeId = b4a.from(requests[1].hex, 'hex') // PING from P with its id; delivered from another port
    const d3 = decodeDatagram(fakeId, addr('127.0.0.1', 50101))
    check(d3.id !== null && d3.id_valid === false, 'id from a wrong source not accepted')
    accepted.push({ what: 'P\'s PING (with P\'s id) arriving from 127.0.0.1:50101: the id is not H(source), so dht-rpc treats it as absent (id_valid false)', hex: hex(fakeId), source: '127.0.0.1:50101', decoded: d3 })
  }

  for (const n of net.nodes) if (n._persistent) n._persistent.destroy()

  return {
    what:
      'dht-rpc messages. Requests come from dht-rpc lib/io.js IO.createRequest() + Request.send() (which calls ' +
      'Request._encodeRequest), replies from Request.sendReply()/reply()/error() (Request._sendReply) and relays from ' +
      'Request.relay(); all captured at the socket\'s trySend(). "decoded" is what dht-rpc\'s own decoders make of them ' +
      '(Request.decode, and IO.onmessage -> decodeReply for responses), plus hyperdht lib/messages.js for values.',
    layout:
      'request: 03, uint flags (1 id, 2 token, 4 internal, 8 target, 16 value), u16 tid, 6-byte to, [fixed32 id], ' +
      '[fixed32 token], uint command, [fixed32 target], [buffer value]. response: 13, uint flags (1 id, 2 token, ' +
      '4 closerNodes, 8 error, 16 value), u16 tid, 6-byte to, [fixed32 id], [fixed32 token], [array(ipv4) closerNodes], ' +
      '[uint error], [buffer value]. id_valid: whether the id equals H(source address), otherwise dht-rpc drops it.',
    fixed: {
      token: hex(TOKEN),
      target: hex(TARGET),
      topic: hex(TOPIC),
      topic_2: hex(TOPIC_2),
      refresh: hex(REFRESH)
    },
    nodes,
    request_flag_matrix: reqMatrix,
    request_flag_matrix_note:
      'All 32 combinations of the request flags: command 2 (FIND_NODE when internal, FIND_PEER when not); the id comes ' +
      'from P (persistent, sending from its server socket), the others from A; token = fixed.token, target = ' +
      'fixed.target, value = 76 77 78 79 7a. tid = 0x0100 + flags.',
    requests,
    response_flag_matrix: resMatrix,
    response_flag_matrix_note:
      'All 32 combinations of the reply flags, made by Request.sendReply(error, value, token, hasCloserNodes) on a ' +
      'request from A (internal command 7, tid 0x0300 + flags, with a target when closer nodes are wanted): from B ' +
      '(persistent: id) or E (ephemeral: no id); closer nodes = the responder\'s table closest(target); error 1 when ' +
      'set; value 76 77 78 79 7a when set; token = token(127.0.0.1, secret 1) of the responder.',
    exchanges,
    exchanges_note:
      'Scenarios on the in-memory network, in delivery order. Every datagram: sender socket, receiver socket (null = ' +
      'nothing listens at to_addr), bytes, decoded. tids are chosen by setting the sender\'s tid counter; B\'s own ' +
      'requests use its counter.',
    dropped,
    dropped_note: 'Datagrams that IO.onmessage ignores: no reply, no handler call, no error.',
    accepted
  }
}

// ---------------------------------------------------------------- live testnet

const LIVE_FIND_TARGET = H(utf8('peersockets dht vectors live find_node'))
const LIVE_IMMUTABLE = utf8('peersockets live immutable')
const LIVE_MUTABLE = utf8('peersockets live mutable')
const LIVE_MUTABLE_SEQ = 1

async function waitUntil(what, cond, ms = 5000) {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what)
    await sleep(5)
  }
}

// the deterministic part of a decoded datagram; keep = fields whose values do not vary
function shape(d, len, keep = []) {
  const s = { type: d.type, flags: d.flags, flag_names: d.flag_names }
  const varies = ['tid', 'to']
  if (d.type === 'request') {
    Object.assign(s, { internal: d.internal, command: d.command, command_name: d.command_name })
    if (d.id !== null) s.id_valid = d.id_valid
    if (d.id !== null) varies.push('id')
    if (d.token !== null) varies.push('token')
    if (d.target !== null) {
      if (keep.includes('target')) s.target = d.target
      else varies.push('target')
    }
  } else {
    if (d.id !== null) {
      s.id_valid = d.id_valid
      varies.push('id')
    }
    if (d.token !== null) varies.push('token')
    if (d.closer_nodes !== null) {
      s.closer_nodes_count = d.closer_nodes.length
      varies.push('closer_nodes')
    }
    s.error = d.error
  }
  if (d.value !== null) {
    s.value_len = d.value.length / 2
    if (keep.includes('value')) {
      s.value = d.value
      if (d.value_decoded !== undefined) s.value_decoded = d.value_decoded
    } else {
      varies.push('value')
    }
  }
  s.len = len
  s.varies = varies
  return s
}

async function liveOnce(obs) {
  LIVE.log = []
  LIVE.on = true
  const checks = []
  const ok = (cond, what) => {
    check(cond, 'live: ' + what)
    checks.push(what)
  }
  let tn = null
  try {
    tn = await createTestnet(3)
    const [n0, n1, n2] = tn.nodes
    const persistence = tn.nodes.map((n) => !n.ephemeral)
    ok(JSON.stringify(persistence) === '[false,true,true]', 'testnet nodes 1 and 2 are persistent, node 0 (the bootstrap node) is not')
    const client = tn.createNode()
    const mark = LIVE.log.length
    await client.fullyBootstrapped()

    const roles = new Map()
    const nodeList = [['node0', n0], ['node1', n1], ['node2', n2], ['client', client]]
    for (const [name, n] of nodeList) {
      roles.set(n.io.serverSocket.address().port, name + '.server')
      roles.set(n.io.clientSocket.address().port, name + '.client')
    }
    const portOf = (n, which) => n.io[which + 'Socket'].address().port
    const N1 = portOf(n1, 'server')
    const N0 = portOf(n0, 'server')
    const clientPorts = [portOf(client, 'server'), portOf(client, 'client')]
    ok(client.ephemeral && client.firewalled, 'the client is ephemeral and firewalled (sends from its client socket)')

    const dec = (e, command = null) => {
      if (!e.dec) e.dec = decodeDatagram(e.buf, addr('127.0.0.1', e.src), command)
      return e.dec
    }
    const findReq = (from, dstPort, command, internal, pred = () => true) =>
      LIVE.log.find((e) => e.index >= from && clientPorts.includes(e.src) && e.dst.port === dstPort && e.buf[0] === 0x03 && dec(e).command === command && dec(e).internal === internal && pred(dec(e)))
    const findRes = (req, srcPort, command = null) =>
      LIVE.log.find((e) => e.index > req.index && e.src === srcPort && e.buf[0] === 0x13 && clientPorts.includes(e.dst.port) && dec(e, command).tid === dec(req).tid)
    const pair = async (from, dstPort, command, internal, pred) => {
      let req = null
      let res = null
      await waitUntil(`request ${command} to ${dstPort}`, () => (req = findReq(from, dstPort, command, internal, pred)))
      await waitUntil(`response ${command} from ${dstPort}`, () => (res = findRes(req, dstPort, internal ? null : command)))
      return [req, res]
    }
    const exchanges = []
    const record = (name, what, req, res, keepReq, keepRes, extra = {}) => {
      const dreq = dec(req)
      const dres = dec(res)
      const e = {
        name,
        what,
        request: { from: roles.get(req.src) || 'other', to: roles.get(req.dst.port) || 'other', ...shape(dreq, req.buf.length, keepReq) },
        response: { from: roles.get(res.src) || 'other', to: roles.get(res.dst.port) || 'other', ...shape(dres, res.buf.length, keepRes) },
        ...extra
      }
      if (obs) {
        e.observed_nondeterministic = {
          request: { src_port: req.src, dst: addrStr(req.dst), hex: hex(req.buf), decoded: dreq },
          response: { src_port: res.src, dst: addrStr(res.dst), hex: hex(res.buf), decoded: dres }
        }
      }
      exchanges.push(e)
      return [dreq, dres]
    }
    const idOf = (port) => peer.id('127.0.0.1', port)

    // 1. bootstrap: FIND_NODE for the client's own (random) table id to node0, and the PING_NAT quick firewall test
    {
      const [req, res] = await pair(mark, N0, RPC_COMMANDS.FIND_NODE, true)
      const [dq, dr] = record('bootstrap_find_node', 'client.fullyBootstrapped(): FIND_NODE for its own random table id to the bootstrap node (node0, not persistent: no id in its reply).', req, res, [], [])
      ok(dq.flags === 0x0c && dr.flags === 0x04 && dr.closer_nodes.length === 2, 'bootstrap FIND_NODE: flags 0c, reply flags 04 with 2 closer nodes (node1, node2)')
      const [preq, pres] = await pair(mark, N0, RPC_COMMANDS.PING_NAT, true)
      const [pq, pr] = record('bootstrap_ping_nat', 'client.fullyBootstrapped(): the quick firewall test, PING_NAT to the first node that replied (node0) with value = u16 of the client\'s server-socket port; node0 replies to that port.', preq, pres, [], [], {
        reply_goes_to_value_port: true
      })
      ok(pq.flags === 0x14 && pq.value_decoded.port === portOf(client, 'server') && pres.dst.port === portOf(client, 'server') && pr.to.port === portOf(client, 'server') && pr.flags === 0x00, 'PING_NAT value = client server port; the reply goes there')
    }

    // 2. findNode(fixed target)
    {
      const from = LIVE.log.length
      await client.findNode(LIVE_FIND_TARGET).finished()
      const [req, res] = await pair(from, N1, RPC_COMMANDS.FIND_NODE, true)
      const [dq, dr] = record('find_node', 'client.findNode(target).finished(): FIND_NODE to node1 and its reply.', req, res, ['target'], [])
      ok(dq.flags === 0x0c && dq.target === hex(LIVE_FIND_TARGET), 'FIND_NODE request flags 0c, fixed target')
      ok(dr.flags === 0x05 && dr.id_valid && b4a.equals(b4a.from(dr.id, 'hex'), idOf(N1)) && dr.closer_nodes.length === 1, 'FIND_NODE reply: id = H(node1 address), 1 closer node (node2)')
    }

    // 3. announce(topic, keyPair, [])
    let lookupToken = null
    {
      const from = LIVE.log.length
      await client.announce(TOPIC, KP_1, []).finished()
      const [lreq, lres] = await pair(from, N1, COMMANDS.LOOKUP, false)
      const [, lr] = record('announce_lookup', 'client.announce(topic, keyPair(seed 01), []): its LOOKUP to node1 (nothing stored yet).', lreq, lres, ['target'], ['value'])
      ok(lr.flags === 0x07 && lr.token !== null, 'LOOKUP reply before the announce: id, token, closer nodes, no value')
      lookupToken = lr.token
      const [areq, ares] = await pair(from, N1, COMMANDS.ANNOUNCE, false)
      const dq = dec(areq)
      const ann = c.decode(m.announce, b4a.from(dq.value, 'hex'))
      const want = Persistent.signAnnounce(TOPIC, b4a.from(dq.token, 'hex'), idOf(N1), { peer: { publicKey: KP_1.publicKey, relayAddresses: [] }, refresh: null }, KP_1)
      const sigOk = b4a.equals(ann.signature, want)
      record('announce', 'the ANNOUNCE commit to node1: token from node1\'s LOOKUP reply, value = announce {peer (publicKey, no relays), signature}; the signature covers node1\'s id and that token, so it varies.', areq, ares, ['target'], [], {
        announce_value: {
          flags: b4a.from(dq.value, 'hex')[0],
          peer: plain(ann.peer),
          refresh: null,
          signature_len: 64,
          signature_valid: sigOk,
          bump: ann.bump
        }
      })
      ok(dq.flags === 0x1a && dq.token === lookupToken, 'ANNOUNCE flags 1a, token = node1\'s LOOKUP reply token')
      ok(sigOk, 'ANNOUNCE signature = Persistent.signAnnounce(topic, token, H(node1 address), record, keyPair)')
      ok(dec(ares).flags === 0x01, 'ANNOUNCE reply: id only')
      const [zq, zr] = await pair(from, N0, COMMANDS.LOOKUP, false)
      const [, z] = record('lookup_not_persistent', 'the same LOOKUP to node0 (not persistent): error 1 with closer nodes.', zq, zr, ['target'], [])
      ok(z.flags === 0x0c && z.error === 1 && z.closer_nodes.length === 2, 'node0 answers LOOKUP with error 1 and 2 closer nodes')
    }

    // 4. lookup(topic) finds the record
    {
      const from = LIVE.log.length
      const found = []
      for await (const r of client.lookup(TOPIC)) found.push(r)
      const [req, res] = await pair(from, N1, COMMANDS.LOOKUP, false)
      const [, dr] = record('lookup', 'client.lookup(topic): LOOKUP reply of node1 with the announced record.', req, res, ['target'], ['value'])
      ok(dr.flags === 0x17 && dr.value === hex(c.encode(m.lookupRawReply, { peers: [c.encode(m.peer, { publicKey: KP_1.publicKey, relayAddresses: [] })], bump: 0 })), 'LOOKUP reply value = one record, bump 0')
      ok(found.length >= 2, 'lookup() yields the replies of node1 and node2')
    }

    // 5. unannounce(topic, keyPair)
    {
      const from = LIVE.log.length
      await client.unannounce(TOPIC, KP_1)
      const [req, res] = await pair(from, N1, COMMANDS.UNANNOUNCE, false)
      const dq = dec(req)
      const ann = c.decode(m.announce, b4a.from(dq.value, 'hex'))
      const want = Persistent.signUnannounce(TOPIC, b4a.from(dq.token, 'hex'), idOf(N1), { peer: { publicKey: KP_1.publicKey, relayAddresses: [] }, refresh: null }, KP_1)
      record('unannounce', 'client.unannounce(topic, keyPair): the UNANNOUNCE to node1 (after a LOOKUP that found the record).', req, res, ['target'], [], {
        announce_value: { flags: b4a.from(dq.value, 'hex')[0], peer: plain(ann.peer), signature_len: 64, signature_valid: b4a.equals(ann.signature, want) }
      })
      ok(dq.flags === 0x1a && b4a.equals(ann.signature, want) && dec(res).flags === 0x01, 'UNANNOUNCE: flags 1a, signature = Persistent.signUnannounce, reply id only')
    }

    // 6. immutable put / get
    {
      const from = LIVE.log.length
      const { hash } = await client.immutablePut(LIVE_IMMUTABLE)
      ok(b4a.equals(hash, H(LIVE_IMMUTABLE)), 'immutablePut target = H(value)')
      const [gq, gr] = await pair(from, N1, COMMANDS.IMMUTABLE_GET, false)
      record('immutable_put_query', 'client.immutablePut(value): its IMMUTABLE_GET query to node1 (token, nothing stored yet).', gq, gr, ['target'], ['value'])
      const [pq, pr] = await pair(from, N1, COMMANDS.IMMUTABLE_PUT, false)
      const [dq, dr] = record('immutable_put', 'the IMMUTABLE_PUT commit to node1.', pq, pr, ['target', 'value'], ['value'])
      ok(dq.flags === 0x1a && dq.value === hex(LIVE_IMMUTABLE) && dq.token === dec(gr).token && dr.flags === 0x07, 'IMMUTABLE_PUT: token from the GET reply, raw value; reply id, token, closer nodes')
      const from2 = LIVE.log.length
      const got = await client.immutableGet(H(LIVE_IMMUTABLE))
      ok(got && b4a.equals(got.value, LIVE_IMMUTABLE), 'immutableGet returns the value')
      const [q, r] = await pair(from2, N1, COMMANDS.IMMUTABLE_GET, false)
      const [, d] = record('immutable_get', 'client.immutableGet(H(value)): node1\'s reply carries the value.', q, r, ['target'], ['value'])
      ok(d.flags === 0x17 && d.value === hex(LIVE_IMMUTABLE), 'IMMUTABLE_GET reply value')
    }

    // 7. mutable put / get
    {
      const from = LIVE.log.length
      const put = await client.mutablePut(KP_2, LIVE_MUTABLE, { seq: LIVE_MUTABLE_SEQ })
      const sig = Persistent.signMutable(LIVE_MUTABLE_SEQ, LIVE_MUTABLE, KP_2)
      ok(b4a.equals(put.signature, sig), 'mutablePut signature = Persistent.signMutable')
      const [gq, gr] = await pair(from, N1, COMMANDS.MUTABLE_GET, false)
      record('mutable_put_query', 'client.mutablePut(keyPair(seed 02), value, {seq: 1}): its MUTABLE_GET query (value uint 0) to node1.', gq, gr, ['target', 'value'], ['value'])
      const [pq, pr] = await pair(from, N1, COMMANDS.MUTABLE_PUT, false)
      const [dq, dr] = record('mutable_put', 'the MUTABLE_PUT commit to node1: the value (publicKey, seq, value, signature) does not depend on the storing node, so it is fixed.', pq, pr, ['target', 'value'], ['value'])
      ok(dq.flags === 0x1a && dq.value === hex(c.encode(m.mutablePutRequest, { publicKey: KP_2.publicKey, seq: LIVE_MUTABLE_SEQ, value: LIVE_MUTABLE, signature: sig })) && dr.flags === 0x07, 'MUTABLE_PUT value = mutablePutRequest; reply id, token, closer nodes')
      const from2 = LIVE.log.length
      const got = await client.mutableGet(KP_2.publicKey)
      ok(got && got.seq === LIVE_MUTABLE_SEQ && b4a.equals(got.value, LIVE_MUTABLE), 'mutableGet returns seq and value')
      const [q, r] = await pair(from2, N1, COMMANDS.MUTABLE_GET, false)
      const [, d] = record('mutable_get', 'client.mutableGet(publicKey): node1\'s reply value is the stored mutable get response.', q, r, ['target', 'value'], ['value'])
      ok(d.flags === 0x17 && d.value === hex(c.encode(m.mutableGetResponse, { seq: LIVE_MUTABLE_SEQ, value: LIVE_MUTABLE, signature: sig })), 'MUTABLE_GET reply value = mutableGetResponse')
    }

    // every reply that carries an id: id = H(source); every request the client sent has no id
    for (const e of LIVE.log.slice(mark)) {
      if (e.buf[0] !== 0x03 && e.buf[0] !== 0x13) continue
      const d = dec(e)
      if (d.id !== null) check(d.id_valid, 'live: every id equals H(source address)')
      if (clientPorts.includes(e.src)) check(d.id === null, 'live: the ephemeral client never sends an id')
    }
    ok(true, 'every id on the wire equals H(source address); the ephemeral client never sends one')

    const out = {
      what:
        'A real loopback testnet: hyperdht/testnet createTestnet(3) (node0 = bootstrap, never persistent; node1, node2 ' +
        'persistent) and client = testnet.createNode() (ephemeral, firewalled). Datagrams captured at udx-native ' +
        'Socket.send/trySend. Each exchange is the client\'s request to node1 (or node0 where said) and its reply. ' +
        'Only what does not vary between runs is recorded: the "varies" list names the fields left out (tids, ports, ' +
        'ids, tokens, closer-node addresses, and targets/values that depend on them).',
      setup: {
        testnet_size: 3,
        persistent: persistence,
        client: 'testnet.createNode()',
        topic: hex(TOPIC),
        announce_key_pair_seed: hex(SEED_1),
        mutable_key_pair_seed: hex(SEED_2),
        find_node_target: hex(LIVE_FIND_TARGET),
        immutable_value: hex(LIVE_IMMUTABLE),
        mutable_value: hex(LIVE_MUTABLE),
        mutable_seq: LIVE_MUTABLE_SEQ
      },
      exchanges,
      checks
    }
    if (obs) {
      out.observed_nondeterministic = {
        ports: Object.fromEntries([...roles.entries()].map(([p, r]) => [r, p])),
        ids: Object.fromEntries(nodeList.map(([name, n]) => [name, hex(n.id)])),
        datagrams_captured: LIVE.log.length
      }
    }
    return out
  } finally {
    LIVE.on = false
    if (tn) await tn.destroy()
  }
}

async function live(obs) {
  for (let attempt = 1; ; attempt++) {
    try {
      const out = await liveOnce(obs)
      log('live ok' + (attempt > 1 ? ` (attempt ${attempt})` : ''))
      return out
    } catch (err) {
      if (attempt >= ATTEMPTS) throw err
      log(`live attempt ${attempt} failed, retrying: ${err.message}`)
    }
  }
}

// ---------------------------------------------------------------- main

async function main() {
  const args = process.argv.slice(2)
  const obs = args.includes('--observed')
  if (args.some((x) => x !== '--observed')) throw new Error('usage: node dht_vectors.mjs [--observed]')

  const watchdog = setTimeout(() => {
    log(`watchdog: still running after ${WATCHDOG_MS} ms`)
    process.exit(1)
  }, WATCHDOG_MS)
  watchdog.unref()

  const out = {
    generator: 'tests/interop/js/dht_vectors.mjs',
    packages: packages(),
    conventions:
      'All byte strings are lowercase hex. Addresses are {host, port}. H(x) = BLAKE2b-256 without a key. "decoded" ' +
      'fields are what the JavaScript decoders return, with null for absent fields. Keys named ' +
      'observed_nondeterministic appear only with --observed and vary run to run.',
    addresses: addresses()
  }
  log('addresses ok')
  out.rpc_messages = await rpcMessages()
  log('rpc_messages ok')
  out.tokens = tokens()
  log('tokens ok')
  out.namespaces = namespaces()
  log('namespaces ok')
  out.hyperdht_values = hyperdhtValues()
  log('hyperdht_values ok')
  out.signatures = signatures()
  log('signatures ok')
  out.live = await live(obs)

  process.stdout.write(JSON.stringify(out, null, 2) + '\n')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
