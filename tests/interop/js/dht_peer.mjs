// A hyperdht 6 testnet, or a hyperdht client node driven by JSON-line commands,
// for the Python DHT's interop tests. Everything runs on 127.0.0.1.
//
//   node dht_peer.mjs --testnet N
//   node dht_peer.mjs --bootstrap HOST:PORT [--bootstrap HOST:PORT]... [--quick-firewall false]
//
// --testnet N: N persistent (ephemeral: false, firewalled: false) HyperDHT nodes,
//   built as hyperdht/testnet's createTestnet builds them (the first has no
//   bootstrap, each later one bootstraps from the first, each is awaited with
//   fullyBootstrapped()), but every node on a random port. createTestnet is not
//   used: its `port` option reaches the first node only, and HyperDHT turns port
//   0 into its default 49737 (`opts.port || 49737`; dht-rpc then tries
//   49737-49741 before any free port), so parallel runs would race for those
//   ports. Here every node gets `port: [0, 0]`, an empty range for dht-rpc's
//   port scan, so it binds port 0 (a port the OS picks). Only "exit" is accepted.
// --bootstrap HOST:PORT (repeatable): one ephemeral HyperDHT client node
//   (ephemeral: true, random ports as above) with those bootstrap nodes; it
//   answers the commands below once it has bootstrapped.
// --quick-firewall true|false (client only, default true): HyperDHT's quickFirewall
//   option. false keeps the client firewalled on loopback; with the default, the
//   quick check races the bootstrap and now and then finds a node reachable, and
//   a connect to or from that node then goes the direct "OPEN" way. Between two
//   firewalled nodes on loopback a connect with the default options takes the
//   LAN shortcut (it races the holepunch and wins); listen with
//   share_local_address false, or connect with local_connection false, leaves
//   only the holepunch path.
//
// Events (stdout, one JSON object per line):
//   {"event":"testnet","bootstrap":[{"host":H,"port":P}],"nodes":[{"host":H,"port":P}]}
//       --testnet: every node fully bootstrapped; bootstrap is the first node
//   {"event":"ready","host":H,"port":P,"ephemeral":bool,"firewalled":bool}
//       --bootstrap: the client bootstrapped (host/port: the socket it sends from;
//       firewalled: dht.firewalled once bootstrapped)
//   {"event":"lookup","topic":hex32,"keys":[hex32],"peers":[{"public_key":hex32,
//    "relay_addresses":[{"host":H,"port":P}]}],"replies":N}
//       every public key found on the topic, once each (first record seen wins),
//       in the order found; replies = how many nodes answered with records
//   {"event":"announced","topic":hex32,"public_key":hex32}
//   {"event":"unannounced","topic":hex32,"public_key":hex32}
//   {"event":"find_peer","public_key":hex32,"found":bool,"relay_addresses":[{"host":H,"port":P}]}
//       the record announced at H(public_key) (what a hyperdht server announces)
//   {"event":"immutable_put","key":hex32}                    key = BLAKE2b-256(value)
//   {"event":"immutable_get","key":hex32,"value":hex|null}   null: not found
//   {"event":"mutable_put","public_key":hex32,"seq":N,"signature":hex64}
//   {"event":"mutable_get","public_key":hex32,"seq":N|null,"value":hex|null,"signature":hex|null}
//       the newest verified value with a seq >= the one asked for; nulls: not found
//
//   Servers (listen) and their incoming connections; server connection ids n
//   count from 1 per process, over all servers:
//   {"event":"listening","public_key":hex32,"relay_addresses":[{"host":H,"port":P}],"firewalled":bool}
//       server.listen() resolved (announced to its relays); it keeps accepting
//   {"event":"unlistened","public_key":hex32}                 server.close() resolved
//   {"event":"connection","id":n,"public_key":hex32,"remote_public_key":hex32,
//    "remote_host":H|null,"remote_port":P|null,"socket":"client"|"server"|"puncher","firewalled":bool}
//       a connection to the server with public_key; remote_host/port: where its
//       UDX stream is connected (rawStream.remoteHost/remotePort); socket: which
//       UDP socket carries it: the node's io.clientSocket or io.serverSocket
//       (a direct path) or any other ("puncher": a holepunch socket); firewalled:
//       this node's dht.firewalled now (it can change after "ready")
//   {"event":"server_end","id":n,"bytes":N,"sha256":hex,"remote_ended":bool}
//       the connection closed without an error; bytes/sha256: everything received
//       (remote_ended: the remote ended its side cleanly before that)
//   {"event":"server_error","id":n,"code":str|null,"message":str}
//       the connection failed; no server_end follows (exactly one of the two)
//   {"event":"server_sent","id":n,"size":N}
//       server_send: pattern(N, 7) written and our side ended ('finish')
//
//   Outgoing connections (connect); connection ids cid count from 1 per process,
//   separately from the server ids:
//   {"event":"connected","cid":n,"ms":float}
//       the connection opened, ms after the client.connect() call
//   {"event":"connect_done","cid":n,"sent":N,"received":M,"sha256":hex,
//    "remote_host":H|null,"remote_port":P|null,"socket":"client"|"server"|"puncher",
//    "firewalled":bool,"punches":{"consistent":N,"random":N,"open":N,...}}
//       the remote ended its side and ours finished (all of pattern(N, 3) written
//       and ended); sha256 of the M bytes received; socket as in "connection";
//       punches: a copy of the node's cumulative client.stats.punches at that time
//       (open counts direct "OPEN" paths on either side, consistent/random the
//       punch rounds started); with "read": false, M is 0 and done comes when our
//       side finished (what arrives is discarded; the connection closes once the
//       remote ends too, or on exit)
//   {"event":"connect_error","cid":n,"code":str|null,"message":str}
//       the connection failed (err.code, e.g. PEER_NOT_FOUND), or closed before
//       both sides ended; no connect_done follows
//   {"event":"connect_all_done","count":K,"ok":N}
//       every connection of one connect command finished; ok: how many with connect_done
//   {"event":"connect_times","ms":[float]}
//       connect_time: one duration per connect, in order
//
//   {"event":"cmd-error","cmd":str,"message":str}
//       a bad command, or a DHT operation that failed (hyperdht threw); the peer carries on
//   {"event":"error","message":str}                          fatal; exit code 1
//
// Commands (stdin; run one at a time, in order, so the answers come in order):
//   {"cmd":"lookup","topic":hex32}                    dht.lookup(topic), read to the end
//   {"cmd":"announce","topic":hex32,"seed":hex32,"relay_addresses":[{"host":H,"port":P}]}
//       await dht.announce(topic, HyperDHT.keyPair(seed), relayAddresses).finished()
//       (relay_addresses optional, default []); hyperdht does not refresh it later
//   {"cmd":"unannounce","topic":hex32,"seed":hex32}  await dht.unannounce(topic, HyperDHT.keyPair(seed))
//   {"cmd":"find_peer","public_key":hex32}            dht.findPeer(publicKey), up to the first match
//   {"cmd":"immutable_put","value":hex}               await dht.immutablePut(value)
//   {"cmd":"immutable_get","key":hex32}               await dht.immutableGet(key)
//   {"cmd":"mutable_put","seed":hex32,"value":hex,"seq":N}
//       await dht.mutablePut(HyperDHT.keyPair(seed), value, { seq }) (seq optional, default 0)
//   {"cmd":"mutable_get","public_key":hex32,"seq":N} await dht.mutableGet(publicKey, { seq }) (seq optional)
//   {"cmd":"listen","seed":hex32,"mode":"echo"|"sink"|"hold","share_local_address":bool,"holepunch":bool}
//       client.createServer({ shareLocalAddress, holepunch: holepunch ? undefined : false },
//       onconnection), await server.listen(HyperDHT.keyPair(seed)); answers
//       "listening" and returns while the server keeps accepting. Several servers
//       (different seeds) may listen at once; a seed already listening is a cmd-error.
//       share_local_address and holepunch are optional (default true); mode is
//       optional (default echo). Per connection, by mode:
//         echo: write back every chunk as it arrives; end our side when the remote ends
//         sink: count and hash what arrives; end our side when the remote ends
//         hold: as sink, but our side stays open until server_send ends it
//       Every mode: "connection", then "server_end" or "server_error".
//   {"cmd":"server_send","id":n,"size":N}
//       connection n writes pattern(N, 7) and ends its side; "server_sent" once
//       finished. cmd-error if n is unknown, closed, or already ended its side.
//       It returns at once; "server_sent" (or "server_error") comes later.
//   {"cmd":"unlisten","seed":hex32}                   await server.close(); "unlistened"
//       (its open connections are left alone)
//   {"cmd":"connect","public_key":hex32,"seed":hex32,"size":N,"count":K,"local_connection":bool,"read":bool}
//       K connections at once, each client.connect(publicKey, { keyPair, localConnection })
//       with keyPair = HyperDHT.keyPair(seed) (seed optional; one random key pair
//       for the command otherwise); each writes pattern(size, 3), ends its side and
//       reads until the remote ends (read false: discard what arrives, done once
//       our side finished). Defaults: size 0, count 1, local_connection true,
//       read true. Returns at once (runs in the background): per connection
//       "connected" then "connect_done" or "connect_error"; then "connect_all_done".
//   {"cmd":"connect_time","public_key":hex32,"count":N,"seed":hex32,"local_connection":bool}
//       N times in sequence: t0 = performance.now(); client.connect(publicKey,
//       { keyPair, localConnection }); write one byte (0x2a); wait until a byte
//       comes back (the server must echo); record performance.now() - t0; destroy
//       the socket and await its 'close'. Then "connect_times". A failed connect is
//       a cmd-error "CODE: message". seed/local_connection optional as for connect.
//   {"cmd":"exit"}
//       close every server and destroy every connection (bounded: 3 s), then
//       destroy the node(s), exit 0 (also on stdin end or SIGTERM)

import {
  require,
  emit,
  log,
  installCrashHandlers,
  exitNow,
  parseArgs,
  commands,
  commandError,
  fromHex,
  pattern
} from './_common.mjs'
import { createHash } from 'node:crypto'

const HyperDHT = require('hyperdht')

const HOST = '127.0.0.1'
// dht-rpc's port scan over [start, end): empty, so it binds port 0 (see above)
const ANY_PORT = [0, 0]

installCrashHandlers()

const args = parseArgs({ testnet: 'string', bootstrap: 'list', 'quick-firewall': 'string' })
if ((args.testnet !== null) === (args.bootstrap.length > 0)) {
  throw new Error('give exactly one of --testnet N or --bootstrap HOST:PORT')
}
const quickFirewallArg = args['quick-firewall']
if (quickFirewallArg !== null && quickFirewallArg !== 'true' && quickFirewallArg !== 'false') {
  throw new Error(`--quick-firewall: expected true or false, got ${JSON.stringify(quickFirewallArg)}`)
}
if (quickFirewallArg !== null && args.testnet !== null) throw new Error('--quick-firewall is for client nodes (--bootstrap)')
const quickFirewall = quickFirewallArg !== 'false'

// every HyperDHT this process made, destroyed on exit (last made first)
const nodes = []
let client = null
let shuttingDown = false

// listening servers by seed (hex); connections to them by id; outgoing connections
const servers = new Map()
const serverConns = new Map()
let lastServerConnId = 0
const clientSockets = new Set()
let lastClientConnId = 0

// seeds of the payloads: what clients send, what server_send sends
const CLIENT_SEED = 3
const SERVER_SEED = 7
const SHUTDOWN_GRACE_MS = 3000

function address(dht) {
  const a = dht.address()
  return { host: a.host, port: a.port }
}

function parseHostPort(value) {
  const colon = value.lastIndexOf(':')
  const port = Number(value.slice(colon + 1))
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`--bootstrap: expected HOST:PORT, got ${JSON.stringify(value)}`)
  }
  return { host: value.slice(0, colon), port }
}

async function startTestnet(size) {
  const first = new HyperDHT({ ephemeral: false, firewalled: false, bootstrap: [], port: ANY_PORT, host: HOST })
  nodes.push(first)
  await first.fullyBootstrapped()
  const bootstrap = [{ host: HOST, port: first.address().port }]
  while (nodes.length < size) {
    const node = new HyperDHT({ ephemeral: false, firewalled: false, bootstrap, port: ANY_PORT, host: HOST })
    nodes.push(node)
    await node.fullyBootstrapped()
  }
  log(`testnet of ${size} nodes, bootstrap ${HOST}:${bootstrap[0].port}`)
  emit({ event: 'testnet', bootstrap, nodes: nodes.map(address) })
}

async function startClient(bootstrap) {
  client = new HyperDHT({ ephemeral: true, bootstrap, port: ANY_PORT, host: HOST, quickFirewall })
  nodes.push(client)
  await client.fullyBootstrapped()
  const { host, port } = address(client)
  log(
    `client on ${host}:${port}, bootstrap ${bootstrap.map((b) => `${b.host}:${b.port}`).join(' ')},` +
      ` quickFirewall ${quickFirewall}, firewalled ${client.firewalled}`
  )
  emit({ event: 'ready', host, port, ephemeral: client.ephemeral, firewalled: client.firewalled })
}

// ------------------------------------------------------------------ arguments

function hexArg(cmd, name, length = -1) {
  try {
    return fromHex(cmd[name], name, length)
  } catch (err) {
    throw commandError(err.message)
  }
}

function seqArg(cmd) {
  const seq = cmd.seq === undefined ? 0 : cmd.seq
  if (!Number.isSafeInteger(seq) || seq < 0) throw commandError(`bad seq ${JSON.stringify(cmd.seq)}`)
  return seq
}

function relaysArg(cmd) {
  const relays = cmd.relay_addresses === undefined ? [] : cmd.relay_addresses
  if (!Array.isArray(relays)) throw commandError('relay_addresses: expected a list of {host, port}')
  return relays.map((r) => {
    if (!r || typeof r.host !== 'string' || !Number.isInteger(r.port) || r.port < 0 || r.port > 65535) {
      throw commandError(`relay_addresses: bad address ${JSON.stringify(r)}`)
    }
    return { host: r.host, port: r.port }
  })
}

const hex = (buf) => (buf ? Buffer.from(buf).toString('hex') : null)
const addresses = (list) => (list || []).map((a) => ({ host: a.host, port: a.port }))

// hyperdht's own failures become cmd-error: the test sees them, the peer carries on
async function dhtOp(fn) {
  try {
    return await fn()
  } catch (err) {
    if (err && err.isCommandError) throw err
    log('operation failed:', err && err.stack ? err.stack : String(err))
    throw commandError(`${err && err.code ? err.code + ': ' : ''}${err && err.message ? err.message : String(err)}`)
  }
}

function boolArg(cmd, name, fallback) {
  const value = cmd[name] === undefined ? fallback : cmd[name]
  if (typeof value !== 'boolean') throw commandError(`${name}: expected true or false, got ${JSON.stringify(cmd[name])}`)
  return value
}

function countArg(cmd, name, fallback, min = 0) {
  const value = cmd[name] === undefined ? fallback : cmd[name]
  if (!Number.isSafeInteger(value) || value < min) throw commandError(`bad ${name} ${JSON.stringify(cmd[name])}`)
  return value
}

// the key pair of an optional "seed": HyperDHT.keyPair(seed), else a random one
function keyPairArg(cmd) {
  return cmd.seed === undefined ? HyperDHT.keyPair() : HyperDHT.keyPair(hexArg(cmd, 'seed', 32))
}

const errorCode = (err) => (err && err.code ? String(err.code) : null)
const errorMessage = (err) => (err && err.message ? err.message : String(err))

// ------------------------------------------------------------------ connections

// which of the node's UDP sockets carries a connection's UDX stream
function socketKind(socket) {
  const udx = socket.rawStream ? socket.rawStream.socket : null
  if (udx === null || udx === undefined) return null
  if (udx === client.io.clientSocket) return 'client'
  if (udx === client.io.serverSocket) return 'server'
  return 'puncher'
}

function remoteOf(socket) {
  const raw = socket.rawStream
  return {
    remote_host: raw && raw.remoteHost ? raw.remoteHost : null,
    remote_port: raw && raw.remotePort ? raw.remotePort : null
  }
}

// an incoming connection of a listening server
function onServerConnection(server, mode, socket) {
  const id = ++lastServerConnId
  const hash = createHash('sha256')
  const conn = { socket, bytes: 0, ended: false }
  let remoteEnded = false
  let failed = false
  serverConns.set(id, conn)

  const endOurSide = () => {
    if (conn.ended) return
    conn.ended = true
    socket.end()
  }

  emit({
    event: 'connection',
    id,
    public_key: hex(server.publicKey),
    remote_public_key: hex(socket.remotePublicKey),
    ...remoteOf(socket),
    socket: socketKind(socket),
    firewalled: client.firewalled
  })
  socket.on('data', (chunk) => {
    conn.bytes += chunk.byteLength
    hash.update(chunk)
    if (mode === 'echo' && !conn.ended) socket.write(chunk)
  })
  socket.on('end', () => {
    remoteEnded = true
    if (mode !== 'hold') endOurSide()
  })
  socket.on('error', (err) => {
    if (failed) return
    failed = true
    log(`server connection ${id} failed:`, errorMessage(err))
    emit({ event: 'server_error', id, code: errorCode(err), message: errorMessage(err) })
  })
  socket.on('close', () => {
    serverConns.delete(id)
    if (failed) return
    emit({ event: 'server_end', id, bytes: conn.bytes, sha256: hash.digest('hex'), remote_ended: remoteEnded })
  })
}

// one outgoing connection: write pattern(size, 3), end, read until the remote ends
function connectOne(publicKey, keyPair, size, localConnection, read) {
  const cid = ++lastClientConnId
  const t0 = performance.now()
  return new Promise((resolve) => {
    let socket
    try {
      socket = client.connect(publicKey, { keyPair, localConnection })
    } catch (err) {
      emit({ event: 'connect_error', cid, code: errorCode(err), message: errorMessage(err) })
      resolve(false)
      return
    }
    clientSockets.add(socket)
    const hash = createHash('sha256')
    let received = 0
    let remoteEnded = !read
    let finished = false
    let settled = false

    const settle = (ok) => {
      if (settled) return false
      settled = true
      resolve(ok)
      return true
    }
    const maybeDone = () => {
      if (!remoteEnded || !finished || settled) return
      const punches = client.stats && client.stats.punches ? { ...client.stats.punches } : null
      emit({
        event: 'connect_done',
        cid,
        sent: size,
        received,
        sha256: hash.digest('hex'),
        ...remoteOf(socket),
        socket: socketKind(socket),
        firewalled: client.firewalled,
        punches
      })
      settle(true)
    }

    socket.on('open', () => {
      emit({ event: 'connected', cid, ms: performance.now() - t0 })
    })
    if (read) {
      socket.on('data', (chunk) => {
        received += chunk.byteLength
        hash.update(chunk)
      })
      socket.on('end', () => {
        remoteEnded = true
        maybeDone()
      })
    } else {
      // discarded unread (flowing, so the remote is never stalled); the connection
      // stays open after connect_done until the remote ends too, or exit
      socket.resume()
    }
    socket.on('finish', () => {
      finished = true
      maybeDone()
    })
    socket.on('error', (err) => {
      if (settled) return
      log(`connection ${cid} failed:`, errorMessage(err))
      emit({ event: 'connect_error', cid, code: errorCode(err), message: errorMessage(err) })
      settle(false)
    })
    socket.on('close', () => {
      clientSockets.delete(socket)
      // close without an error, before both sides ended
      if (settled) return
      emit({ event: 'connect_error', cid, code: null, message: 'closed before both sides ended' })
      settle(false)
    })

    if (size > 0) socket.write(pattern(size, CLIENT_SEED))
    socket.end()
  })
}

// connect, write one byte, wait for the echo; the time in ms; the socket is closed after
async function timeOneConnect(publicKey, keyPair, localConnection) {
  const t0 = performance.now()
  const socket = client.connect(publicKey, { keyPair, localConnection })
  clientSockets.add(socket)
  const closed = new Promise((resolve) => socket.once('close', resolve))
  try {
    await new Promise((resolve, reject) => {
      socket.once('data', resolve)
      socket.once('error', reject)
      socket.once('close', () => reject(new Error('closed before the echo arrived')))
      socket.write(Buffer.from([0x2a]))
    })
    return performance.now() - t0
  } finally {
    socket.destroy()
    await closed
    clientSockets.delete(socket)
  }
}

// ------------------------------------------------------------------ commands

async function handle(cmd) {
  if (cmd.cmd === 'exit') {
    await shutdown()
    return
  }
  if (client === null) throw commandError(`${cmd.cmd}: no client node in --testnet mode (only exit)`)
  switch (cmd.cmd) {
    case 'lookup': {
      const topic = hexArg(cmd, 'topic', 32)
      const peers = new Map()
      let replies = 0
      await dhtOp(async () => {
        for await (const data of client.lookup(topic)) {
          replies++
          for (const peer of data.peers) {
            const key = hex(peer.publicKey)
            if (!peers.has(key)) peers.set(key, { public_key: key, relay_addresses: addresses(peer.relayAddresses) })
          }
        }
      })
      emit({ event: 'lookup', topic: hex(topic), keys: [...peers.keys()], peers: [...peers.values()], replies })
      return
    }
    case 'announce': {
      const topic = hexArg(cmd, 'topic', 32)
      const keyPair = HyperDHT.keyPair(hexArg(cmd, 'seed', 32))
      const relays = relaysArg(cmd)
      await dhtOp(() => client.announce(topic, keyPair, relays).finished())
      emit({ event: 'announced', topic: hex(topic), public_key: hex(keyPair.publicKey) })
      return
    }
    case 'unannounce': {
      const topic = hexArg(cmd, 'topic', 32)
      const keyPair = HyperDHT.keyPair(hexArg(cmd, 'seed', 32))
      await dhtOp(() => client.unannounce(topic, keyPair))
      emit({ event: 'unannounced', topic: hex(topic), public_key: hex(keyPair.publicKey) })
      return
    }
    case 'find_peer': {
      const publicKey = hexArg(cmd, 'public_key', 32)
      let found = null
      await dhtOp(async () => {
        const query = client.findPeer(publicKey)
        for await (const data of query) {
          if (data.peer && Buffer.from(data.peer.publicKey).equals(publicKey)) {
            found = data.peer
            break
          }
        }
        query.destroy()
      })
      emit({
        event: 'find_peer',
        public_key: hex(publicKey),
        found: found !== null,
        relay_addresses: found ? addresses(found.relayAddresses) : []
      })
      return
    }
    case 'immutable_put': {
      const value = hexArg(cmd, 'value')
      const result = await dhtOp(() => client.immutablePut(value))
      emit({ event: 'immutable_put', key: hex(result.hash) })
      return
    }
    case 'immutable_get': {
      const key = hexArg(cmd, 'key', 32)
      const result = await dhtOp(() => client.immutableGet(key))
      emit({ event: 'immutable_get', key: hex(key), value: result ? hex(result.value) : null })
      return
    }
    case 'mutable_put': {
      const keyPair = HyperDHT.keyPair(hexArg(cmd, 'seed', 32))
      const value = hexArg(cmd, 'value')
      const seq = seqArg(cmd)
      const result = await dhtOp(() => client.mutablePut(keyPair, value, { seq }))
      emit({ event: 'mutable_put', public_key: hex(keyPair.publicKey), seq: result.seq, signature: hex(result.signature) })
      return
    }
    case 'mutable_get': {
      const publicKey = hexArg(cmd, 'public_key', 32)
      const seq = seqArg(cmd)
      const result = await dhtOp(() => client.mutableGet(publicKey, { seq }))
      emit({
        event: 'mutable_get',
        public_key: hex(publicKey),
        seq: result ? result.seq : null,
        value: result ? hex(result.value) : null,
        signature: result ? hex(result.signature) : null
      })
      return
    }
    case 'listen': {
      const seed = hexArg(cmd, 'seed', 32)
      const mode = cmd.mode === undefined ? 'echo' : cmd.mode
      if (mode !== 'echo' && mode !== 'sink' && mode !== 'hold') throw commandError(`bad mode ${JSON.stringify(cmd.mode)}`)
      const shareLocalAddress = boolArg(cmd, 'share_local_address', true)
      const holepunch = boolArg(cmd, 'holepunch', true)
      if (servers.has(hex(seed))) throw commandError(`already listening on seed ${hex(seed)}`)
      const keyPair = HyperDHT.keyPair(seed)
      const entry = { publicKey: keyPair.publicKey, server: null }
      const server = client.createServer({ shareLocalAddress, holepunch: holepunch ? undefined : false }, (socket) =>
        onServerConnection(entry, mode, socket)
      )
      entry.server = server
      servers.set(hex(seed), entry)
      try {
        await dhtOp(() => server.listen(keyPair))
      } catch (err) {
        servers.delete(hex(seed))
        server.close().catch(() => {})
        throw err
      }
      emit({
        event: 'listening',
        public_key: hex(keyPair.publicKey),
        relay_addresses: addresses(server.relayAddresses),
        firewalled: client.firewalled
      })
      return
    }
    case 'unlisten': {
      const seed = hexArg(cmd, 'seed', 32)
      const entry = servers.get(hex(seed))
      if (!entry) throw commandError(`not listening on seed ${hex(seed)}`)
      servers.delete(hex(seed))
      await dhtOp(() => entry.server.close())
      emit({ event: 'unlistened', public_key: hex(entry.publicKey) })
      return
    }
    case 'server_send': {
      const id = countArg(cmd, 'id', undefined, 1)
      const size = countArg(cmd, 'size', undefined)
      const conn = serverConns.get(id)
      if (!conn) throw commandError(`no open server connection ${id}`)
      if (conn.ended) throw commandError(`server connection ${id} already ended its side`)
      conn.ended = true
      conn.socket.once('finish', () => emit({ event: 'server_sent', id, size }))
      if (size > 0) conn.socket.write(pattern(size, SERVER_SEED))
      conn.socket.end()
      return
    }
    case 'connect': {
      const publicKey = hexArg(cmd, 'public_key', 32)
      const keyPair = keyPairArg(cmd)
      const size = countArg(cmd, 'size', 0)
      const count = countArg(cmd, 'count', 1, 1)
      const localConnection = boolArg(cmd, 'local_connection', true)
      const read = boolArg(cmd, 'read', true)
      const runs = []
      for (let i = 0; i < count; i++) runs.push(connectOne(publicKey, keyPair, size, localConnection, read))
      Promise.all(runs).then((results) => {
        if (shuttingDown) return
        emit({ event: 'connect_all_done', count, ok: results.filter(Boolean).length })
      })
      return
    }
    case 'connect_time': {
      const publicKey = hexArg(cmd, 'public_key', 32)
      const count = countArg(cmd, 'count', 1, 1)
      const keyPair = keyPairArg(cmd)
      const localConnection = boolArg(cmd, 'local_connection', true)
      const ms = []
      for (let i = 0; i < count; i++) ms.push(await dhtOp(() => timeOneConnect(publicKey, keyPair, localConnection)))
      emit({ event: 'connect_times', ms })
      return
    }
    default:
      throw commandError(`unknown command ${cmd.cmd}`)
  }
}

async function shutdown() {
  if (shuttingDown) return
  shuttingDown = true
  // servers first (they unannounce), then every connection, each bounded, then the nodes
  const closing = [...servers.values()].map((entry) => entry.server.close())
  servers.clear()
  let timer = null
  const grace = new Promise((resolve) => {
    timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)
  })
  await Promise.race([Promise.allSettled(closing), grace])
  for (const conn of serverConns.values()) conn.socket.destroy()
  for (const socket of clientSockets) socket.destroy()
  clearTimeout(timer)
  for (let i = nodes.length - 1; i >= 0; i--) {
    try {
      // force: the servers were closed above (or did not close in time)
      await nodes[i].destroy({ force: true })
    } catch (err) {
      log('destroy failed:', err && err.message ? err.message : String(err))
    }
  }
  exitNow(0)
}

process.on('SIGTERM', () => {
  shutdown().catch(() => exitNow(0))
})

if (args.testnet !== null) {
  const size = Number(args.testnet)
  if (!Number.isInteger(size) || size < 1) throw new Error(`--testnet: bad size ${JSON.stringify(args.testnet)}`)
  await startTestnet(size)
} else {
  await startClient(args.bootstrap.map(parseHostPort))
}
commands(handle, shutdown)
