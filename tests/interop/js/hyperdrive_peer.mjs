// A hyperdrive 13 peer that exchanges hypercore extension messages
// ("peersockets/<topic>") with the peers of its drive, over loopback TCP
// (and, with --udx, over udx-native streams on loopback UDP).
//
//   node hyperdrive_peer.mjs --storage DIR [--key HEX32] [--listen] [--connect PORT]...
//        [--seed HEX32] [--topic NAME]... [--echo] [--print-text] [--extra-cores N [--extra-cores-first]]
//        [--udx] [--dht HOST:PORT]... [--dht-listen] [--dht-quick-firewall false] [--dht-share-local false]
//
// Without --key: Corestore(DIR), Hyperdrive(store), ready, put /hello.txt (the owner).
// With --key: a read-only Hyperdrive(store, key) (a second peer of that drive).
// --extra-cores N: then open N more hypercores in the same store (store.get({ name: 'extra-<i>' }),
// ready, sessions kept open), before any connection, so corestore opens a channel for each of
// them on every replication stream as soon as it opens, after the drive's (its cores are opened
// first), or before them with --extra-cores-first (the extra cores are opened before the drive).
// Every connection: const s = store.replicate(isInitiator, { keyPair }); s.pipe(socket).pipe(s)
// where keyPair is this process's static key pair (from --seed, else random), so
// "public_key" is known up front. --listen accepts any number of connections;
// --connect may be repeated; {"cmd":"connect"} opens more.
// --udx: also bind one udx-native socket (new UDX(), createSocket(), bind(0, '127.0.0.1'));
// {"cmd":"udx_connect"} then makes a UDX connection the way hyperswarm uses one:
//   const raw = udx.createStream(local_id); raw.connect(socket, remote_id, port, '127.0.0.1')
//   const noise = new NoiseSecretStream(initiator, raw, { keyPair }); store.replicate(noise)
// (the Noise XX handshake runs over the stream itself), with the same events as a TCP one.
// --dht HOST:PORT (repeatable): also run a hyperdht node (new HyperDHT({ bootstrap, keyPair,
// host: '127.0.0.1', port: [0, 0], quickFirewall })) bootstrapped from those nodes, as hyperswarm
// does: --dht-listen listens on keyPair (createServer({ shareLocalAddress }), server.listen(keyPair))
// and {"cmd":"dht_connect"} connects to a public key; either way the secret stream hyperdht hands
// over (its handshake was the IK one through the DHT) goes to store.replicate(socket).
// --dht-quick-firewall false keeps the node firewalled on loopback; --dht-share-local false
// stops the server offering LAN addresses (both force the holepunch path, as the tests need).
// Extensions: drive.core.registerExtension('peersockets/<topic>', {encoding: 'binary', onmessage})
// for every --topic (default: chat).
//
// Events (stdout, one JSON object per line):
//   {"event":"ready","key":hex32,"discovery_key":hex32,"public_key":hex32,"writable":bool,"version":N,"topics":[str],"extra_cores":N}
//   {"event":"listening","port":N}
//   {"event":"udx-listening","port":N}                    with --udx: the UDX socket's port (127.0.0.1)
//   {"event":"dht-ready","host":H,"port":P,"firewalled":bool}  with --dht: the node bootstrapped
//   {"event":"dht-listening","public_key":hex32}          with --dht-listen
//   {"event":"udx-stream","local_id":N,"remote_id":N,"port":P,"initiator":bool}
//        udx_connect made and connected its stream (packets for local_id are taken from now on)
//   {"event":"connection","remote_public_key":hex32,"initiator":bool,"handshake_hash":hex64,"channels":N}   handshake done;
//        channels: protomux channels this side has opened on the stream by then (one per replicated core)
//   {"event":"stream-error","message":str,"remote_public_key":hex32|null}
//   {"event":"stream-close","remote_public_key":hex32|null}
//        connection, stream-error and stream-close also carry "transport":"udx","local_id":N
//        for a UDX connection, "transport":"dht","socket":"client"|"server"|"puncher" for a hyperdht
//        one (which of the node's sockets carries it; puncher: holepunched) (a TCP one's are unchanged)
//   {"event":"peer-add","remote_public_key":hex32}        hypercore/alpha channel open on drive.core
//   {"event":"peer-remove","remote_public_key":hex32}
//   {"event":"ext","topic":str,"length":N,"sha256":hex,"from":hex32[,"text":str]}   text with --print-text if utf-8
//   {"event":"sent","topic":str,"count":N,"peers":N}      messages handed to the extension (count per peer)
//   {"event":"cmd-error","cmd":str,"message":str}
//   {"event":"error","message":str}                       fatal; exit code 1
// Commands (stdin):
//   {"cmd":"send","topic":str,"size":N,"seed":K,"count"?:1,"to"?:hex32}   pattern(size, seed + j), j < count
//   {"cmd":"send","topic":str,"sizes":[N,...],"seed":K,"to"?:hex32}       one message per size, seeds seed + j
//   {"cmd":"send_text","topic":str,"text":str,"to"?:hex32}
//   {"cmd":"connect","port":N}
//   {"cmd":"udx_connect","local_id":N,"remote_id":N,"port":P,"initiator":bool,"framed"?:false}
//        with --udx: one UDX stream to (remote_id, 127.0.0.1:P), replicated as above;
//        "framed": createStream(local_id, { framed: true }), as hyperdht makes its raw streams
//        (libudx's read framing; the bytes on the wire are the same)
//   {"cmd":"dht_connect","public_key":hex32}   with --dht: dht.connect(publicKey, { keyPair }), replicated
//   {"cmd":"exit"}   closes the drive and the store, exit 0

import {
  require,
  emit,
  log,
  exitNow,
  installCrashHandlers,
  pattern,
  sha256,
  hex,
  fromHex,
  parseArgs,
  listen,
  connect,
  commands,
  commandError,
  sizesOf,
  seedOf
} from './_common.mjs'

const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const crypto = require('hypercore-crypto')
const NoiseSecretStream = require('@hyperswarm/secret-stream')
const UDX = require('udx-native')
const HyperDHT = require('hyperdht')

installCrashHandlers()

const args = parseArgs({
  storage: 'string',
  key: 'string',
  listen: 'flag',
  connect: 'list',
  seed: 'string',
  topic: 'list',
  echo: 'flag',
  'print-text': 'flag',
  'extra-cores': 'string',
  'extra-cores-first': 'flag',
  udx: 'flag',
  dht: 'list',
  'dht-listen': 'flag',
  'dht-quick-firewall': 'string',
  'dht-share-local': 'string'
})
if (!args.storage) throw new Error('--storage DIR is required')
const topics = args.topic.length ? args.topic : ['chat']
const keyPair = crypto.keyPair(args.seed ? fromHex(args.seed, '--seed', 32) : undefined)
const driveKey = args.key ? fromHex(args.key, '--key', 32) : null
const extraCores = args['extra-cores'] === null ? 0 : Number(args['extra-cores'])
if (!Number.isInteger(extraCores) || extraCores < 0) throw new Error(`bad --extra-cores ${args['extra-cores']}`)

const store = new Corestore(args.storage)
// kept open: corestore replicates the cores it holds in the order they were opened,
// and only while they have an open session
const extras = []
async function openExtraCores() {
  for (let i = 0; i < extraCores; i++) extras.push(store.get({ name: 'extra-' + i }))
  await Promise.all(extras.map((core) => core.ready()))
}
if (args['extra-cores-first']) await openExtraCores()
const drive = driveKey ? new Hyperdrive(store, driveKey) : new Hyperdrive(store)
await drive.ready()
if (!driveKey) await drive.put('/hello.txt', Buffer.from('hello from hyperdrive_peer.mjs\n'))
if (!args['extra-cores-first']) await openExtraCores()

const utf8 = new TextDecoder('utf-8', { fatal: true })
const extensions = new Map()
for (const topic of topics) {
  const ext = drive.core.registerExtension('peersockets/' + topic, {
    encoding: 'binary',
    onmessage(buf, peer) {
      const event = { event: 'ext', topic, length: buf.byteLength, sha256: sha256(buf), from: hex(peer.remotePublicKey) }
      if (args['print-text']) {
        try {
          event.text = utf8.decode(buf)
        } catch {}
      }
      emit(event)
      if (args.echo) ext.send(buf, peer)
    }
  })
  extensions.set(topic, ext)
}

drive.core.on('peer-add', (peer) => emit({ event: 'peer-add', remote_public_key: hex(peer.remotePublicKey) }))
drive.core.on('peer-remove', (peer) => emit({ event: 'peer-remove', remote_public_key: hex(peer.remotePublicKey) }))

emit({
  event: 'ready',
  key: hex(drive.key),
  discovery_key: hex(drive.discoveryKey),
  public_key: hex(keyPair.publicKey),
  writable: drive.writable,
  version: drive.version,
  topics,
  extra_cores: extras.length
})

const sockets = new Set()
let closing = false

function replicate(socket, isInitiator) {
  sockets.add(socket)
  socket.on('error', (err) => log('socket error:', err.message))
  socket.on('close', () => sockets.delete(socket))

  const s = store.replicate(isInitiator, { keyPair })
  s.pipe(socket).pipe(s)
  report(s, () => socket.destroy(), {})
}

// The events of one replication stream s (s.noiseStream is its secret stream); onclose runs
// when s closes; extra: fields added to its connection, stream-error and stream-close events.
function report(s, onclose, extra) {
  const noise = s.noiseStream
  noise.opened.then((ok) => {
    if (!ok || closing) return
    emit({
      event: 'connection',
      remote_public_key: hex(noise.remotePublicKey),
      initiator: noise.isInitiator,
      handshake_hash: hex(noise.handshakeHash),
      channels: [...noise.userData].length,
      ...extra
    })
  })
  s.on('error', (err) => {
    if (!closing) emit({ event: 'stream-error', message: err.message, remote_public_key: hex(noise.remotePublicKey), ...extra })
  })
  s.on('close', () => {
    onclose()
    if (!closing) emit({ event: 'stream-close', remote_public_key: hex(noise.remotePublicKey), ...extra })
  })
}

// As hyperswarm does with a connection hyperdht made over UDX: a secret stream over the raw
// UDX stream, handed to the store (store.replicate(stream) attaches the cores to its muxer).
function udxConnect(cmd) {
  if (!udxSocket) throw commandError('udx_connect needs --udx')
  const localId = checkStreamId(cmd.local_id, 'local_id')
  const remoteId = checkStreamId(cmd.remote_id, 'remote_id')
  const port = cmd.port
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw commandError(`bad port ${JSON.stringify(port)}`)
  if (typeof cmd.initiator !== 'boolean') throw commandError('"initiator" must be a boolean')
  if (cmd.framed !== undefined && typeof cmd.framed !== 'boolean') throw commandError('"framed" must be a boolean')
  if (udxStreams.has(localId)) throw commandError(`UDX stream id ${localId} is in use`)

  const raw = udx.createStream(localId, cmd.framed ? { framed: true } : {})
  udxStreams.add(localId)
  sockets.add(raw)
  raw.on('error', (err) => log(`udx stream ${localId} error:`, err.message))
  raw.on('close', () => {
    sockets.delete(raw)
    udxStreams.delete(localId)
  })
  raw.connect(udxSocket, remoteId, port, '127.0.0.1')

  const noise = new NoiseSecretStream(cmd.initiator, raw, { keyPair })
  const s = store.replicate(noise)
  // the secret stream owns raw: it ends raw when it ends, destroys raw when it is destroyed
  report(s, () => {}, { transport: 'udx', local_id: localId })
  emit({ event: 'udx-stream', local_id: localId, remote_id: remoteId, port, initiator: cmd.initiator })
}

// Which of the hyperdht node's sockets carries a connection (a puncher socket: holepunched).
function socketKind(socket) {
  const raw = socket.rawStream
  if (!raw || !raw.socket) return null
  if (raw.socket === dhtNode.io.serverSocket) return 'server'
  if (raw.socket === dhtNode.io.clientSocket) return 'client'
  return 'puncher'
}

function replicateDht(socket) {
  sockets.add(socket)
  socket.on('error', (err) => log('dht socket error:', err.message))
  socket.on('close', () => sockets.delete(socket))
  const extra = { transport: 'dht' }
  socket.opened.then(() => {
    extra.socket = socketKind(socket) // before report's own opened handler emits "connection"
  })
  const s = store.replicate(socket)
  report(s, () => {}, extra)
}

function dhtConnect(cmd) {
  if (!dhtNode) throw commandError('dht_connect needs --dht')
  const publicKey = fromHex(cmd.public_key, 'public_key', 32)
  replicateDht(dhtNode.connect(publicKey, { keyPair }))
}

function checkStreamId(value, what) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw commandError(`${what}: expected a 32-bit unsigned integer, got ${JSON.stringify(value)}`)
  }
  return value
}

function connectTo(port) {
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw commandError(`bad port ${JSON.stringify(port)}`)
  replicate(connect(port), true)
}

function extensionFor(cmd) {
  const ext = extensions.get(cmd.topic)
  if (!ext) throw commandError(`topic ${JSON.stringify(cmd.topic)} is not registered (use --topic)`)
  return ext
}

function peersFor(cmd) {
  const peers = drive.core.peers
  if (cmd.to === undefined || cmd.to === null) return peers
  const to = fromHex(cmd.to, 'to', 32)
  const found = peers.filter((p) => p.remotePublicKey && p.remotePublicKey.equals(to))
  if (found.length === 0) throw commandError(`no peer ${cmd.to}`)
  return found
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'send': {
      const ext = extensionFor(cmd)
      const sizes = sizesOf(cmd)
      const seed = seedOf(cmd)
      const peers = peersFor(cmd)
      for (let j = 0; j < sizes.length; j++) {
        const buf = pattern(sizes[j], seed + j)
        for (const peer of peers) ext.send(buf, peer)
      }
      emit({ event: 'sent', topic: cmd.topic, count: sizes.length, peers: peers.length })
      return
    }
    case 'send_text': {
      const ext = extensionFor(cmd)
      if (typeof cmd.text !== 'string') throw commandError('"text" must be a string')
      const peers = peersFor(cmd)
      const buf = Buffer.from(cmd.text, 'utf-8')
      for (const peer of peers) ext.send(buf, peer)
      emit({ event: 'sent', topic: cmd.topic, count: 1, peers: peers.length })
      return
    }
    case 'connect':
      connectTo(cmd.port)
      return
    case 'udx_connect':
      udxConnect(cmd)
      return
    case 'dht_connect':
      dhtConnect(cmd)
      return
    case 'exit':
      await shutdown()
      return
    default:
      throw commandError(`unknown command ${cmd.cmd}`)
  }
}

async function shutdown() {
  if (closing) return
  closing = true
  const force = setTimeout(() => {
    log('close timed out; exiting anyway')
    exitNow(0)
  }, 4000)
  try {
    if (server) server.close()
    await drive.close()
    await store.close()
    for (const socket of sockets) socket.destroy()
    if (udxSocket) await udxSocket.close()
    if (dhtServer) await dhtServer.close()
    if (dhtNode) await dhtNode.destroy()
  } catch (err) {
    log('error while closing:', err.message)
  }
  clearTimeout(force)
  exitNow(0)
}

let server = null
if (args.listen) server = await listen((socket) => replicate(socket, false))

let udx = null
let udxSocket = null
const udxStreams = new Set() // local ids of the live UDX streams
if (args.udx) {
  udx = new UDX()
  udxSocket = udx.createSocket()
  udxSocket.bind(0, '127.0.0.1')
  emit({ event: 'udx-listening', port: udxSocket.address().port })
}
let dhtNode = null
let dhtServer = null
if (args.dht.length) {
  const bootstrap = args.dht.map((value) => {
    const colon = value.lastIndexOf(':')
    return { host: value.slice(0, colon), port: Number(value.slice(colon + 1)) }
  })
  dhtNode = new HyperDHT({
    bootstrap,
    keyPair,
    host: '127.0.0.1',
    port: [0, 0],
    quickFirewall: args['dht-quick-firewall'] !== 'false'
  })
  await dhtNode.fullyBootstrapped()
  const { host, port } = dhtNode.address()
  emit({ event: 'dht-ready', host, port, firewalled: dhtNode.firewalled })
  if (args['dht-listen']) {
    dhtServer = dhtNode.createServer({ shareLocalAddress: args['dht-share-local'] !== 'false' }, replicateDht)
    await dhtServer.listen(keyPair)
    emit({ event: 'dht-listening', public_key: hex(keyPair.publicKey) })
  }
}
for (const port of args.connect) connectTo(Number(port))

commands(handle, shutdown)
process.on('SIGTERM', () => shutdown())
