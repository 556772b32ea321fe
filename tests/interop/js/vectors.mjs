// Known-answer vectors for peersockets, produced by the real JavaScript packages.
//
//   node tests/interop/js/vectors.mjs > tests/vectors/wire.json
//
// Everything is deterministic: fixed seeds, forced Noise ephemeral keys and
// fixed secretstream headers (see "header_method" fields). Running it twice
// gives byte-identical output.

import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const require = createRequire(import.meta.url)
const HERE = path.dirname(fileURLToPath(import.meta.url))
const NM = path.join(HERE, 'node_modules')

const b4a = require('b4a')
const c = require('compact-encoding')
const sodium = require('sodium-universal')
const crypto = require('hypercore-crypto')
const curve = require('noise-curve-ed')
const Protomux = require('protomux')
const NoiseSecretStream = require('@hyperswarm/secret-stream')
const Handshake = require('@hyperswarm/secret-stream/lib/handshake.js')
const caps = require('hypercore/lib/caps.js')
const messages = require('hypercore/lib/messages.js')
const { Duplex } = require('streamx')

const PACKAGES = [
  '@hyperswarm/secret-stream',
  'b4a',
  'compact-encoding',
  'corestore',
  'hypercore',
  'hypercore-crypto',
  'hyperdrive',
  'noise-curve-ed',
  'noise-handshake',
  'protomux',
  'sodium-universal',
  'sodium-native',
  'sodium-secretstream',
  'streamx'
]

const hex = (b) => (b === null || b === undefined ? null : b4a.toString(b, 'hex'))
const unhex = (s) => b4a.from(s, 'hex')
const fill = (n, v) => b4a.alloc(n, v)
// byte i = (start + i * step) % 256
const seq = (n, start = 0, step = 1) => {
  const b = b4a.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (start + i * step) % 256
  return b
}
// the deterministic payload pattern used by all interop peers: byte i = (seed + i) % 251
const pattern = (size, seed) => {
  const b = b4a.alloc(size)
  for (let i = 0; i < size; i++) b[i] = (seed + i) % 251
  return b
}
const copyKeyPair = (kp) => ({ publicKey: b4a.from(kp.publicKey), secretKey: b4a.from(kp.secretKey) })
const settle = () => new Promise((resolve) => setTimeout(resolve, 20))

function packages() {
  const out = {}
  for (const name of PACKAGES) {
    const pkg = JSON.parse(readFileSync(path.join(NM, name, 'package.json'), 'utf8'))
    out[name] = pkg.version
  }
  return out
}

// ---------------------------------------------------------------- encoding

function encoding() {
  const uints = [0, 1, 252, 253, 254, 255, 256, 65535, 65536, 4294967295, 4294967296, 9007199254740991]
  const strings = ['', 'hypercore/alpha', 'héllo ✓']
  const buffers = [null, b4a.alloc(0), b4a.from([0x2a]), seq(300)]
  // not valid UTF-8: a lone continuation byte, a truncated sequence, an overlong form,
  // a surrogate, a byte never valid, and a sequence cut short at the end
  const invalidUtf8 = ['70732f80', '70732fe282', 'c0af41', 'eda080', '61ff62', '61f09f98']
  return {
    notes:
      'c.buffer throws on null in compact-encoding 3.5.2, so the null entry of "buffer" is c.optionalBuffer (an absent buffer is 00; ' +
      'an empty buffer also encodes as 00 and c.optionalBuffer decodes a zero length as null).',
    uint: uints.map((v) => [v, hex(c.encode(c.uint, v))]),
    string: strings.map((s) => [s, hex(c.encode(c.string, s))]),
    string_invalid_utf8: invalidUtf8.map((h) => {
      const bytes = b4a.from(h, 'hex')
      return [h, c.decode(c.string, c.encode(c.buffer, bytes))]
    }),
    buffer: buffers.map((b) => [hex(b), hex(b === null ? c.encode(c.optionalBuffer, b) : c.encode(c.buffer, b))]),
    optional_buffer: buffers.map((b) => [hex(b), hex(c.encode(c.optionalBuffer, b))]),
    fixed32: [[hex(seq(32, 0xe0)), hex(c.encode(c.fixed32, seq(32, 0xe0)))]],
    bool: [false, true].map((v) => [v, hex(c.encode(c.bool, v))]),
    uint32array: [[[1, 2, 4294967295], hex(c.encode(c.uint32array, new Uint32Array([1, 2, 4294967295])))]],
    raw: [[hex(seq(5, 1)), hex(c.encode(c.raw, seq(5, 1)))]]
  }
}

// ---------------------------------------------------------------- namespaces

function namespaces() {
  // Neither package exports these lists: secret-stream computes them at
  // index.js:12 with crypto.namespace('hyperswarm/secret-stream', 3) and
  // hypercore at lib/caps.js:9-16 with crypto.namespace('hypercore', 6).
  // We make the same calls and check them against what the packages expose.
  const ss = crypto.namespace('hyperswarm/secret-stream', 3)
  const hc = crypto.namespace('hypercore', 6)

  const hash = seq(64, 7)
  check(b4a.equals(NoiseSecretStream.id(hash, true), blake2b32(ss[0], hash)), 'secret-stream NS_INITIATOR')
  check(b4a.equals(NoiseSecretStream.id(hash, false), blake2b32(ss[1], hash)), 'secret-stream NS_RESPONDER')
  check(b4a.equals(caps.MANIFEST, hc[3]), 'hypercore MANIFEST')
  check(b4a.equals(caps.DEFAULT_NAMESPACE, hc[4]), 'hypercore DEFAULT_NAMESPACE')
  check(b4a.equals(caps.DEFAULT_ENCRYPTION, hc[5]), 'hypercore DEFAULT_ENCRYPTION')
  const key = seq(32)
  check(b4a.equals(caps.replicate(true, key, hash), blake2b32(b4a.concat([hc[1], key]), hash)), 'REPLICATE_INITIATOR')
  check(b4a.equals(caps.replicate(false, key, hash), blake2b32(b4a.concat([hc[2], key]), hash)), 'REPLICATE_RESPONDER')

  return {
    'hyperswarm/secret-stream': ss.map(hex),
    'hyperswarm/secret-stream_names': ['NS_INITIATOR', 'NS_RESPONDER', 'NS_SEND'],
    hypercore: hc.map(hex),
    hypercore_names: [
      'TREE',
      'REPLICATE_INITIATOR',
      'REPLICATE_RESPONDER',
      'MANIFEST',
      'DEFAULT_NAMESPACE',
      'DEFAULT_ENCRYPTION'
    ],
    computed_with:
      "hypercore-crypto.namespace(name, count) - the same call the packages make (secret-stream index.js:12, hypercore lib/caps.js:9-16); " +
      'all entries are computed that way because the packages do not export the arrays',
    verified_against: [
      'secret-stream NoiseSecretStream.id(hash, isInitiator) == BLAKE2b-256(NS_INITIATOR|NS_RESPONDER, key=hash)',
      'hypercore lib/caps.js exports MANIFEST, DEFAULT_NAMESPACE, DEFAULT_ENCRYPTION == entries 3, 4, 5',
      'hypercore lib/caps.js replicate(isInitiator, key, hash) == BLAKE2b-256(REPLICATE_* || key, key=hash)'
    ]
  }
}

function blake2b32(message, key) {
  const out = b4a.alloc(32)
  sodium.crypto_generichash(out, message, key)
  return out
}

function check(ok, what) {
  if (!ok) throw new Error('self-check failed: ' + what)
}

// ---------------------------------------------------------------- keys

const KEYPAIR_SEEDS = [fill(32, 0x00), seq(32), fill(32, 0xff)]

function keypairs() {
  return KEYPAIR_SEEDS.map((seed) => {
    const kp = crypto.keyPair(seed)
    const kp2 = Handshake.keyPair(seed)
    check(b4a.equals(kp.secretKey, kp2.secretKey), 'keyPair == secret-stream keyPair')
    return { seed: hex(seed), public_key: hex(kp.publicKey), secret_key: hex(kp.secretKey) }
  })
}

function dh() {
  const kps = [seq(32, 0x40), seq(32, 0x80), fill(32, 0x33)].map((s) => crypto.keyPair(s))
  const pairs = [
    [0, 1],
    [1, 0],
    [0, 2],
    [2, 1],
    [1, 1]
  ]
  return pairs.map(([a, b]) => {
    const shared = curve.dh(kps[b].publicKey, kps[a])
    return {
      seed: hex(kps[a].secretKey.subarray(0, 32)),
      secret_key: hex(kps[a].secretKey),
      remote_public_key: hex(kps[b].publicKey),
      shared: hex(shared)
    }
  })
}

// ---------------------------------------------------------------- handshakes

const HANDSHAKE_CASES = [
  {
    name: 'fill-bytes',
    initiator_static_seed: fill(32, 0x11),
    initiator_ephemeral_seed: fill(32, 0x12),
    responder_static_seed: fill(32, 0x21),
    responder_ephemeral_seed: fill(32, 0x22)
  },
  {
    name: 'sequences',
    initiator_static_seed: seq(32, 0x00, 3),
    initiator_ephemeral_seed: seq(32, 0x50, 5),
    responder_static_seed: seq(32, 0xa0, 7),
    responder_ephemeral_seed: seq(32, 0xf0, 11)
  }
]

const HEADER_METHOD =
  "The secretstream header comes from libsodium's crypto_secretstream_xchacha20poly1305_init_push, which draws it at random. " +
  'To make it reproducible, init_push was replaced (for this run only) by: header = BLAKE2b-192(' +
  '"peersockets vectors secretstream header", key=the push key); init_pull(state, header, key). ' +
  "init_pull builds exactly the state init_push builds for that header (checked against the real init_push's state), " +
  'so the frames are what secret-stream would write had libsodium drawn that header.'

function deterministicHeader(key) {
  const out = b4a.alloc(24)
  sodium.crypto_generichash(out, b4a.from('peersockets vectors secretstream header'), key)
  return out
}

function withDeterministicHeaders(fn) {
  const original = sodium.crypto_secretstream_xchacha20poly1305_init_push
  sodium.crypto_secretstream_xchacha20poly1305_init_push = function (state, header, key) {
    header.set(deterministicHeader(key))
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
  }
  const restore = () => {
    sodium.crypto_secretstream_xchacha20poly1305_init_push = original
  }
  let result
  try {
    result = fn()
  } catch (err) {
    restore()
    throw err
  }
  if (result && typeof result.then === 'function') {
    return result.then(
      (v) => {
        restore()
        return v
      },
      (err) => {
        restore()
        throw err
      }
    )
  }
  restore()
  return result
}

function checkInitPullEqualsInitPush() {
  const key = seq(32, 9)
  const s1 = b4a.alloc(sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES)
  const s2 = b4a.alloc(sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES)
  const header = b4a.alloc(sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES)
  sodium.crypto_secretstream_xchacha20poly1305_init_push(s1, header, key)
  sodium.crypto_secretstream_xchacha20poly1305_init_pull(s2, header, key)
  check(b4a.equals(s1, s2), 'init_pull state == init_push state')
}

// Run secret-stream's own Handshake class (lib/handshake.js: Noise XX,
// noise-curve-ed, empty prologue) with forced ephemeral key pairs.
function noiseHandshake(tc) {
  const is = crypto.keyPair(tc.initiator_static_seed)
  const ie = crypto.keyPair(tc.initiator_ephemeral_seed)
  const rs = crypto.keyPair(tc.responder_static_seed)
  const re = crypto.keyPair(tc.responder_ephemeral_seed)

  const hi = new Handshake(true, copyKeyPair(is), null, 'XX')
  const hr = new Handshake(false, copyKeyPair(rs), null, 'XX')
  // noise-handshake noise.js:222 only generates `e` when it is still null,
  // and _clear() zeroes it afterwards, hence the copies.
  hi.noise.e = copyKeyPair(ie)
  hr.noise.e = copyKeyPair(re)

  const unframe = (framed) => {
    const len = framed[0] | (framed[1] << 8) | (framed[2] << 16)
    check(len === framed.byteLength - 3, 'handshake frame length')
    return b4a.from(framed.subarray(3))
  }

  // recv() gets copies: noise-handshake keeps `re` as a view into the
  // received buffer and zeroes it when the handshake completes (noise.js:177, :263)
  const s1 = hi.send()
  const m1 = unframe(s1.data)
  const s2 = hr.recv(b4a.from(m1))
  const m2 = unframe(s2.data)
  const s3 = hi.recv(b4a.from(m2))
  const m3 = unframe(s3.data)
  const s4 = hr.recv(b4a.from(m3))

  check(s3.tx !== null && s4.tx !== null, 'handshake complete')
  check(b4a.equals(s3.hash, s4.hash), 'same handshake hash')
  check(b4a.equals(s3.tx, s4.rx) && b4a.equals(s3.rx, s4.tx), 'split keys pair up')
  check(b4a.equals(s3.remotePublicKey, rs.publicKey) && b4a.equals(s4.remotePublicKey, is.publicKey), 'static keys')

  return { is, ie, rs, re, m1, m2, m3, hash: s3.hash, itx: s3.tx, irx: s3.rx, rtx: s4.tx, rrx: s4.rx }
}

function duplexPair(onwrite) {
  let a = null
  let b = null
  a = new Duplex({
    write(data, cb) {
      onwrite('a', data)
      b.push(data)
      cb(null)
    },
    final(cb) {
      b.push(null)
      cb(null)
    }
  })
  b = new Duplex({
    write(data, cb) {
      onwrite('b', data)
      a.push(data)
      cb(null)
    },
    final(cb) {
      a.push(null)
      cb(null)
    }
  })
  return [a, b]
}

// Two real NoiseSecretStream instances over an in-memory pipe, with the
// static key pairs as options and the ephemeral key pairs forced the same way.
async function secretStreamRaw(tc, hs) {
  return withDeterministicHeaders(async () => {
    const writes = { a: [], b: [] }
    const [ra, rb] = duplexPair((side, data) => writes[side].push(b4a.from(data)))

    const si = new NoiseSecretStream(true, ra, { keyPair: copyKeyPair(hs.is) })
    const sr = new NoiseSecretStream(false, rb, { keyPair: copyKeyPair(hs.rs) })
    si._handshake.noise.e = copyKeyPair(hs.ie)
    sr._handshake.noise.e = copyKeyPair(hs.re)

    const received = { i: [], r: [] }
    si.on('data', (d) => received.i.push(b4a.from(d)))
    sr.on('data', (d) => received.r.push(b4a.from(d)))
    si.on('error', () => {})
    sr.on('error', () => {})

    await Promise.all([si.opened, sr.opened])
    const setupI = b4a.concat(writes.a)
    const setupR = b4a.concat(writes.b)
    const nI = writes.a.length
    const nR = writes.b.length

    check(b4a.equals(si.handshakeHash, hs.hash) && b4a.equals(sr.handshakeHash, hs.hash), 'stream handshake hash')

    const msgI = b4a.from('hello from the initiator')
    const msgR = b4a.from('hello from the responder')
    si.write(msgI)
    sr.write(msgR)
    await settle()
    // written separately: streamx (index.js:149-165) can leave a zero-length
    // write queued behind a non-empty one until the next write
    si.write(b4a.alloc(0))
    await settle()
    check(received.r.length === 2 && b4a.equals(received.r[0], msgI), 'responder got message')
    check(received.i.length === 1 && b4a.equals(received.i[0], msgR), 'initiator got message')

    const afterI = writes.a.slice(nI)
    const afterR = writes.b.slice(nR)
    si.destroy()
    sr.destroy()
    await settle()

    return {
      raw_initiator_to_responder: hex(setupI),
      raw_responder_to_initiator: hex(setupR),
      initiator_header: hex(deterministicHeader(hs.itx)),
      responder_header: hex(deterministicHeader(hs.rtx)),
      after_setup: {
        initiator_plaintexts: [hex(msgI), ''],
        initiator_frames: afterI.map(hex),
        responder_plaintexts: [hex(msgR)],
        responder_frames: afterR.map(hex)
      }
    }
  })
}

const CAP_KEYS = [seq(32), seq(32, 0xc0, 13)]

async function handshakes() {
  const out = []
  for (const tc of HANDSHAKE_CASES) {
    const hs = noiseHandshake(tc)
    const raw = await secretStreamRaw(tc, hs)

    const framed = (m) => {
      const len = b4a.alloc(3)
      len[0] = m.byteLength & 255
      len[1] = (m.byteLength >>> 8) & 255
      len[2] = (m.byteLength >>> 16) & 255
      return b4a.concat([len, m])
    }
    const idI = NoiseSecretStream.id(hs.hash, true)
    const idR = NoiseSecretStream.id(hs.hash, false)
    const expectI = b4a.concat([
      framed(hs.m1),
      framed(hs.m3),
      framed(b4a.concat([idI, deterministicHeader(hs.itx)]))
    ])
    const expectR = b4a.concat([framed(hs.m2), framed(b4a.concat([idR, deterministicHeader(hs.rtx)]))])
    check(raw.raw_initiator_to_responder === hex(expectI), 'raw initiator bytes')
    check(raw.raw_responder_to_initiator === hex(expectR), 'raw responder bytes')

    out.push({
      name: tc.name,
      pattern: 'XX',
      protocol_name: 'Noise_XX_Ed25519_ChaChaPoly_BLAKE2b',
      prologue: '',
      initiator_static_seed: hex(tc.initiator_static_seed),
      initiator_static_public_key: hex(hs.is.publicKey),
      initiator_ephemeral_seed: hex(tc.initiator_ephemeral_seed),
      initiator_ephemeral_public_key: hex(hs.ie.publicKey),
      responder_static_seed: hex(tc.responder_static_seed),
      responder_static_public_key: hex(hs.rs.publicKey),
      responder_ephemeral_seed: hex(tc.responder_ephemeral_seed),
      responder_ephemeral_public_key: hex(hs.re.publicKey),
      messages: [hex(hs.m1), hex(hs.m2), hex(hs.m3)],
      handshake_hash: hex(hs.hash),
      initiator_tx: hex(hs.itx),
      initiator_rx: hex(hs.irx),
      responder_tx: hex(hs.rtx),
      responder_rx: hex(hs.rrx),
      initiator_stream_id: hex(idI),
      responder_stream_id: hex(idR),
      capabilities: CAP_KEYS.map((key) => ({
        key: hex(key),
        initiator: hex(caps.replicate(true, key, hs.hash)),
        responder: hex(caps.replicate(false, key, hs.hash))
      })),
      secret_stream: {
        description:
          'Raw bytes each real NoiseSecretStream wrote on its raw stream (u24-framed Noise messages, then the 56-byte ' +
          'stream id + secretstream header frame). Then each side wrote the plaintexts listed (the initiator also an ' +
          'empty keepalive message) and the frames are what went on the wire.',
        header_method: HEADER_METHOD,
        ...raw
      }
    })
  }
  return out
}

// ---------------------------------------------------------------- transport

function secretstreamTransport() {
  checkInitPullEqualsInitPush()

  const key = seq(32, 0x42, 3)
  const header = seq(24, 0x90, 5)
  const state = b4a.alloc(sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES)
  // Equivalent to init_push having drawn `header`.
  sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)

  const TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
  const ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
  const sizes = [0, 1, 100, 1000]
  const msgs = []
  for (let i = 0; i < sizes.length; i++) {
    const plaintext = pattern(sizes[i], i)
    const frame = b4a.alloc(3 + plaintext.byteLength + ABYTES)
    const n = plaintext.byteLength + ABYTES
    frame[0] = n & 255
    frame[1] = (n >>> 8) & 255
    frame[2] = (n >>> 16) & 255
    sodium.crypto_secretstream_xchacha20poly1305_push(state, frame.subarray(3), plaintext, null, TAG_MESSAGE)
    msgs.push({ plaintext: hex(plaintext), frame: hex(frame) })
  }

  // decrypt them back with a fresh pull state
  const pull = b4a.alloc(sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES)
  sodium.crypto_secretstream_xchacha20poly1305_init_pull(pull, header, key)
  for (const m of msgs) {
    const frame = unhex(m.frame)
    const out = b4a.alloc(frame.byteLength - 3 - ABYTES)
    const tag = b4a.alloc(1)
    sodium.crypto_secretstream_xchacha20poly1305_pull(pull, out, tag, frame.subarray(3), null)
    check(hex(out) === m.plaintext && tag[0] === 0, 'transport roundtrip')
  }

  return {
    description:
      'crypto_secretstream_xchacha20poly1305 push with tag MESSAGE and no additional data, in order, from one state; ' +
      'frame = u24le(len(plaintext) + 17) || ciphertext, exactly as secret-stream writes it. plaintext i = pattern(size, i).',
    header_method:
      'header fixed (not random); state = init_pull(header, key), which equals the state init_push produces with that header',
    abytes: ABYTES,
    key: hex(key),
    header: hex(header),
    messages: msgs
  }
}

function discoveryKeys() {
  return [seq(32), fill(32, 0x00), seq(32, 0xc0, 13)].map((key) => ({
    key: hex(key),
    discovery_key: hex(crypto.discoveryKey(key))
  }))
}

// ---------------------------------------------------------------- protomux

function muxPair() {
  const log = []
  const [a, b] = duplexPair((side, data) => log.push([side, hex(data)]))
  a.on('error', () => {})
  b.on('error', () => {})
  const ma = new Protomux(a)
  const mb = new Protomux(b)
  return { log, a, b, ma, mb }
}

const framesOf = (log, side, from = 0) => log.slice(from).filter((e) => e[0] === side).map((e) => e[1])

function userChannel(mux, protocol, id, events = null) {
  return mux.createChannel({
    protocol,
    id,
    handshake: c.raw,
    messages: [
      { encoding: c.buffer, onmessage: (m) => events && events.push(['buffer', hex(m)]) },
      { encoding: c.string, onmessage: (m) => events && events.push(['string', m]) }
    ],
    onopen: (hs) => events && events.push(['open', hex(hs)]),
    onclose: (isRemote, ch) => events && events.push(['close', isRemote, ch.opened])
  })
}

// b pairs every protocol in `protocols` and opens with an empty handshake
function acceptOn(mux, protocols, events) {
  for (const protocol of protocols) {
    mux.pair({ protocol }, (id) => {
      const ch = userChannel(mux, protocol, id, events)
      ch.open(b4a.alloc(0))
    })
  }
}

async function protomuxCases() {
  const cases = []
  const MUX_DESC = 'side a and side b are two Protomux instances on an in-memory framed pipe; each write is one frame'

  {
    const { log, ma, mb } = muxPair()
    const id = fill(32, 0xaa)
    acceptOn(mb, ['test/proto'], null)
    const ch = userChannel(ma, 'test/proto', id)
    ch.open(unhex('010203'))
    await settle()
    check(ch.opened, 'open case opened')
    cases.push({
      name: 'open',
      inputs: {
        description: MUX_DESC + '. a opens a channel; b has paired the protocol and opens back with an empty handshake.',
        protocol: 'test/proto',
        id: hex(id),
        handshake_encoding: 'c.raw',
        handshake: '010203',
        local_channel_id: 1
      },
      frames: framesOf(log, 'a'),
      remote_frames: framesOf(log, 'b')
    })
  }

  {
    const { log, ma, mb } = muxPair()
    acceptOn(mb, ['test/noid'], null)
    const ch = userChannel(ma, 'test/noid', null)
    ch.open(b4a.alloc(0))
    await settle()
    check(ch.opened, 'noid case opened')
    cases.push({
      name: 'open_null_id',
      inputs: {
        description: MUX_DESC + '. id null (encoded as an absent optional buffer), empty c.raw handshake.',
        protocol: 'test/noid',
        id: null,
        handshake_encoding: 'c.raw',
        handshake: '',
        local_channel_id: 1
      },
      frames: framesOf(log, 'a'),
      remote_frames: framesOf(log, 'b')
    })
  }

  {
    const { log, ma, mb } = muxPair()
    const events = []
    acceptOn(mb, ['test/msg'], events)
    const ch = userChannel(ma, 'test/msg', fill(32, 0x01))
    ch.open(b4a.alloc(0))
    await settle()
    const mark = log.length
    ch.messages[0].send(unhex('deadbeef'))
    ch.messages[1].send('héllo ✓')
    ch.messages[0].send(b4a.alloc(0))
    await settle()
    check(events.length === 4 && events[1][1] === 'deadbeef' && events[2][1] === 'héllo ✓', 'messages received')
    cases.push({
      name: 'messages',
      inputs: {
        description:
          MUX_DESC +
          '. Channel messages [c.buffer, c.string]; after the channel is open, a sends type 0 deadbeef, type 1 "héllo ✓", type 0 empty.',
        protocol: 'test/msg',
        id: hex(fill(32, 0x01)),
        local_channel_id: 1,
        sends: [
          { type: 0, encoding: 'c.buffer', data: 'deadbeef' },
          { type: 1, encoding: 'c.string', text: 'héllo ✓' },
          { type: 0, encoding: 'c.buffer', data: '' }
        ]
      },
      setup_frames: log.slice(0, mark),
      frames: framesOf(log, 'a', mark)
    })
  }

  {
    const { log, ma, mb } = muxPair()
    const events = []
    acceptOn(mb, ['test/one', 'test/two'], events)
    const ch1 = userChannel(ma, 'test/one', null)
    const ch2 = userChannel(ma, 'test/two', null)
    ch1.open(b4a.alloc(0))
    ch2.open(b4a.alloc(0))
    await settle()
    const mark = log.length
    ma.cork()
    ch1.messages[0].send(unhex('01'))
    ch1.messages[1].send('two')
    ch1.messages[0].send(pattern(300, 3))
    ch2.messages[1].send('on channel 2')
    ma.uncork()
    await settle()
    check(framesOf(log, 'a', mark).length === 1, 'one batch frame')
    check(events.filter((e) => e[0] !== 'open').length === 4, 'batch delivered')
    cases.push({
      name: 'batch',
      inputs: {
        description:
          MUX_DESC +
          '. a has channel 1 (test/one) and 2 (test/two) open; cork(); ch1 type0 01, ch1 type1 "two", ch1 type0 pattern(300,3), ch2 type1 "on channel 2"; uncork().',
        channels: { 1: 'test/one', 2: 'test/two' },
        sends: [
          { channel: 1, type: 0, data: '01' },
          { channel: 1, type: 1, text: 'two' },
          { channel: 1, type: 0, data: hex(pattern(300, 3)) },
          { channel: 2, type: 1, text: 'on channel 2' }
        ]
      },
      setup_frames: log.slice(0, mark),
      frames: framesOf(log, 'a', mark),
      remote_events: events
    })
  }

  {
    const { log, ma, mb } = muxPair()
    const events = []
    acceptOn(mb, ['test/one', 'test/three'], events)
    const ch1 = userChannel(ma, 'test/one', null)
    ch1.open(b4a.alloc(0))
    await settle()
    const mark = log.length
    ma.cork()
    ch1.messages[1].send('before')
    const ch3 = userChannel(ma, 'test/three', fill(32, 0x03))
    ch3.open(unhex('ff'))
    ch3.messages[1].send('on the new channel')
    ch1.messages[1].send('after')
    ma.uncork()
    await settle()
    check(framesOf(log, 'a', mark).length === 1, 'one batch frame with control')
    cases.push({
      name: 'batch_with_control',
      inputs: {
        description:
          MUX_DESC +
          '. a has channel 1 (test/one) open; cork(); ch1 type1 "before"; open channel 2 (test/three, id 03*32, handshake ff) - a control item; ' +
          'ch2 type1 "on the new channel"; ch1 type1 "after"; uncork(). Control items sit under channel 0 as (type || payload).',
        sends: [
          { channel: 1, type: 1, text: 'before' },
          { channel: 0, control: 'open', local_channel_id: 2, protocol: 'test/three', id: hex(fill(32, 0x03)), handshake: 'ff' },
          { channel: 2, type: 1, text: 'on the new channel' },
          { channel: 1, type: 1, text: 'after' }
        ]
      },
      setup_frames: log.slice(0, mark),
      frames: framesOf(log, 'a', mark),
      remote_events: events
    })
  }

  {
    const { log, ma, mb } = muxPair()
    const events = []
    acceptOn(mb, ['test/close'], events)
    const ch = userChannel(ma, 'test/close', null)
    ch.open(b4a.alloc(0))
    await settle()
    const mark = log.length
    ch.close()
    await settle()
    cases.push({
      name: 'close',
      inputs: {
        description:
          MUX_DESC + '. a closes its open channel 1. b does not answer with a close of its own (remote_frames is empty).',
        protocol: 'test/close',
        id: null,
        local_channel_id: 1
      },
      setup_frames: log.slice(0, mark),
      frames: framesOf(log, 'a', mark),
      remote_frames: framesOf(log, 'b', mark),
      remote_events: events
    })
  }

  {
    const { log, ma } = muxPair()
    const events = []
    const ch = userChannel(ma, 'test/unknown', fill(32, 0x07), events)
    ch.open(unhex('abcd'))
    await settle()
    check(ch.closed && !ch.opened, 'rejected channel closed')
    cases.push({
      name: 'reject',
      inputs: {
        description:
          MUX_DESC +
          '. a opens test/unknown (id 07*32, handshake abcd) which b never registered or paired; b writes a reject naming a\'s channel id. ' +
          'frames = what b wrote.',
        protocol: 'test/unknown',
        id: hex(fill(32, 0x07)),
        opener_channel_id: 1
      },
      opener_frames: framesOf(log, 'a'),
      frames: framesOf(log, 'b'),
      opener_events: events
    })
  }

  return cases
}

// ---------------------------------------------------------------- hypercore

function hypercoreMessageTypes() {
  // lib/replicator.js _makePeer(): createChannel({... messages: [ { encoding: m.wire.X, ... }, ...] })
  const src = readFileSync(path.join(NM, 'hypercore/lib/replicator.js'), 'utf8')
  const start = src.indexOf("protocol: 'hypercore/alpha'")
  check(start !== -1, 'found createChannel in replicator.js')
  const open = src.indexOf('messages: [', start)
  const block = src.slice(open, src.indexOf(']', open))
  const names = [...block.matchAll(/encoding: m\.wire\.(\w+)/g)].map((x) => x[1])
  check(names.length === 10, 'ten message types')
  return names
}

async function hypercore() {
  const w = messages.wire
  const enc = (e, v) => hex(c.encode(e, v))
  const capability = seq(32, 0x10)

  const syncs = [
    { fork: 0, length: 0, remoteLength: 0, canUpgrade: false, uploading: false, downloading: true, hasManifest: false, allowPush: false },
    { fork: 0, length: 0, remoteLength: 0, canUpgrade: true, uploading: true, downloading: true, hasManifest: false, allowPush: false },
    { fork: 0, length: 3, remoteLength: 0, canUpgrade: true, uploading: true, downloading: false, hasManifest: true, allowPush: false },
    { fork: 2, length: 300, remoteLength: 253, canUpgrade: false, uploading: true, downloading: true, hasManifest: true, allowPush: true }
  ]

  const requests = [
    { id: 1, fork: 0, block: { index: 0, nodes: 2 } },
    { id: 2, fork: 0, hash: { index: 5, nodes: 0 } },
    { id: 3, fork: 1, seek: { bytes: 1000, padding: 0 } },
    { id: 4, fork: 0, upgrade: { start: 0, length: 10 } },
    { id: 5, fork: 0, manifest: true },
    { id: 6, fork: 0, block: { index: 7, nodes: 0 }, upgrade: { start: 0, length: 8 }, priority: 1 },
    { id: 300, fork: 0, block: { index: 70000, nodes: 3 }, hash: { index: 2, nodes: 1 }, seek: { bytes: 5, padding: 1 }, upgrade: { start: 1, length: 2 }, manifest: true, priority: 2 }
  ]
  const fullRequest = (r) => ({
    id: r.id,
    fork: r.fork,
    block: r.block || null,
    hash: r.hash || null,
    seek: r.seek || null,
    upgrade: r.upgrade || null,
    manifest: !!r.manifest,
    priority: r.priority || 0
  })

  const handshakes = [
    { seeks: true, capability },
    { seeks: false, capability: fill(32, 0) }
  ]
  const extensions = [
    { name: 'peersockets/chat', message: b4a.from('hello') },
    { name: '', message: b4a.from('same name as before') },
    { name: 'peersockets/chat', message: b4a.alloc(0) }
  ]

  // channel_open_frame from a real Protomux, exactly as replicator.js _makePeer opens it
  const key = seq(32)
  const dk = crypto.discoveryKey(key)
  const log = []
  const [a] = duplexPair((side, data) => log.push([side, hex(data)]))
  a.on('error', () => {})
  const mux = new Protomux(a)
  const ch = mux.createChannel({
    protocol: 'hypercore/alpha',
    aliases: ['hypercore'],
    id: dk,
    handshake: w.handshake,
    messages: hypercoreMessageTypes().map((n) => ({ encoding: w[n] }))
  })
  ch.open({ seeks: true, capability })
  // a sync and an extension on that channel, as they go over protomux
  ch.messages[0].send(syncs[1])
  ch.messages[9].send({ name: 'peersockets/chat', message: b4a.from('hi') })
  await settle()
  check(log.length === 3, 'three hypercore frames')
  const openFrame = log[0][1]

  return {
    source: 'hypercore/lib/messages.js wire.* encoders (imported from the installed package)',
    message_types: hypercoreMessageTypes(),
    handshake: handshakes.map((h) => ({ seeks: h.seeks, capability: hex(h.capability), hex: enc(w.handshake, h) })),
    sync: syncs.map((f) => ({ fields: f, hex: enc(w.sync, f) })),
    request: requests.map((r) => {
      const h = enc(w.request, r)
      return { fields: fullRequest(r), hex: h }
    }),
    cancel: [{ fields: { request: 5 }, hex: enc(w.cancel, { request: 5 }) }],
    no_data: [
      { fields: { request: 1, reason: 0 }, hex: enc(w.noData, { request: 1 }) },
      { fields: { request: 7, reason: 1 }, hex: enc(w.noData, { request: 7, reason: 1 }) },
      { fields: { request: 300, reason: 2 }, hex: enc(w.noData, { request: 300, reason: 2 }) }
    ],
    no_data_note:
      'wire.noData encodes uint request || uint flags (1 when reason != 0) [|| uint reason]; decode treats a missing flags byte as 0.',
    want: [
      { fields: { start: 0, length: 524288, any: false }, hex: enc(w.want, { start: 0, length: 524288 }) },
      { fields: { start: 0, length: 524288, any: true }, hex: enc(w.want, { start: 0, length: 524288, any: true }) }
    ],
    range: [
      { fields: { drop: false, start: 0, length: 1 }, hex: enc(w.range, { drop: false, start: 0, length: 1 }) },
      { fields: { drop: false, start: 0, length: 3 }, hex: enc(w.range, { drop: false, start: 0, length: 3 }) },
      { fields: { drop: true, start: 10, length: 20 }, hex: enc(w.range, { drop: true, start: 10, length: 20 }) }
    ],
    bitfield: [
      { fields: { start: 0, bitfield: [7, 4294967295] }, hex: enc(w.bitfield, { start: 0, bitfield: new Uint32Array([7, 4294967295]) }) }
    ],
    extension: extensions.map((e) => ({ name: e.name, message: hex(e.message), hex: enc(w.extension, e) })),
    channel_open_frame: {
      key: hex(key),
      discovery_key: hex(dk),
      protocol: 'hypercore/alpha',
      handshake: { seeks: true, capability: hex(capability) },
      local_channel_id: 1,
      hex: openFrame
    },
    channel_message_frames: {
      description: 'after channel_open_frame, on the same channel (local id 1): a sync (fields = sync[1]) and an extension',
      sync: log[1][1],
      extension: { name: 'peersockets/chat', message: hex(b4a.from('hi')), hex: log[2][1] }
    }
  }
}

// ---------------------------------------------------------------- main

async function main() {
  const out = {
    generator: 'tests/interop/js/vectors.mjs',
    packages: packages(),
    encoding: encoding(),
    namespaces: namespaces(),
    keypairs: keypairs(),
    dh: dh(),
    handshakes: await handshakes(),
    secretstream_transport: secretstreamTransport(),
    discovery_keys: discoveryKeys(),
    protomux: await protomuxCases(),
    hypercore: await hypercore()
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
