// A hyperdrive 13 app that joins its drives' swarms the way real apps do: hyperswarm
// (one HyperDHT node bootstrapped from the given nodes, on 127.0.0.1), every connection
// handed to the store, each drive's discovery key joined as a topic. Hypercore extension
// messages ("peersockets/<topic>") go to and come from the peers of each drive.
//
//   node swarm_peer.mjs --storage DIR --bootstrap HOST:PORT [--bootstrap HOST:PORT]...
//        [--key HEX32] [--drive-key HEX32]... [--seed HEX32] [--topic NAME]... [--echo] [--print-text]
//        [--server true|false] [--client true|false] [--quick-firewall false]
//
// Without --key: Corestore(DIR), Hyperdrive(store.session()), ready, put /hello.txt (the owner).
// With --key: a read-only Hyperdrive(store.session(), key) (another peer of that drive).
// --drive-key HEX32 (repeatable): more drives, each a read-only Hyperdrive(store.session(), key)
// in the same store, joined the same way, each with its own extensions. (A store session per
// drive, so that closing one drive leaves the store open.)
// --bootstrap HOST:PORT (repeatable, required; the public DHT is never used):
//   const swarm = new Hyperswarm({ keyPair, dht: new HyperDHT({ bootstrap, host: '127.0.0.1',
//     port: [0, 0], quickFirewall }) })   (port [0, 0]: a port the OS picks, as dht_peer.mjs)
//   swarm.on('connection', (conn, info) => store.replicate(conn))
//   const discovery = swarm.join(drive.discoveryKey, { server, client })  for every drive
//   await discovery.flushed() (with --server true, the default), then await swarm.flush()
// keyPair is this process's key pair (from --seed, else random): the swarm's DHT server
// listens on it and its client connections use it, so "public_key" is known up front.
// Hyperswarm's other options are its defaults: firewall allows everyone (but our own key),
// maxPeers 64. hyperswarm keeps one connection per remote key: when both sides dial at once,
// the accepting side destroys one of the two (a key-order tie break, or the older one once it
// has carried data), so a "connection" may be followed at once by its "connection-close".
// --server / --client (default true): the join's modes (announce / look up).
// The DHT should have four nodes or more (dht_peer.mjs --testnet 5): on a JavaScript testnet
// of one to three nodes, hyperswarm's first connection mostly opens on the dialling side
// only (a "connection" there, nothing on the other side), is dropped about 14 s later and
// dialled again.
// --quick-firewall false: HyperDHT's quickFirewall option (keeps the node firewalled on
// loopback until the DHT finds it reachable).
// Extensions: drive.core.registerExtension('peersockets/<topic>', {encoding: 'binary', onmessage})
// for every --topic (default: chat), on every drive.
//
// Events (stdout, one JSON object per line; "drive" is the hex key of the drive concerned):
//   {"event":"ready","key":hex32,"discovery_key":hex32,"public_key":hex32,"writable":bool,"version":N,
//    "topics":[str],"drives":[{"key":hex32,"discovery_key":hex32}]}
//        key/discovery_key: the main drive's; drives: every drive, the main one first
//   {"event":"dht-ready","host":H,"port":P,"firewalled":bool,"server_port":P,"client_port":P}
//        the DHT node bootstrapped; host/port: dht.address(); server_port/client_port: the
//        node's two UDP sockets (io.serverSocket, io.clientSocket)
//   {"event":"joined","discovery_key":hex32,"drive":hex32}   swarm.join'ed, flushed() (server) and
//        swarm.flush() resolved: announced, and every peer found so far was tried
//   {"event":"connection","remote_public_key":hex32,"initiator":bool,"handshake_hash":hex64,
//    "client":bool,"topics":[hex32],"socket":"client"|"server"|"puncher"|null,"remote_host":H,"remote_port":P}
//        swarm 'connection' (conn, info): client = info.client (we dialled); topics = info.topics
//        (discovery keys hyperswarm found this peer on; empty for a connection we accepted);
//        socket: which UDP socket of our DHT node carries it (puncher: holepunched)
//   {"event":"connection-close","remote_public_key":hex32,"error":str|null}
//   {"event":"peer-add","remote_public_key":hex32,"drive":hex32}   hypercore channel open on drive.core
//   {"event":"peer-remove","remote_public_key":hex32,"drive":hex32}
//   {"event":"ext","topic":str,"length":N,"sha256":hex,"from":hex32,"drive":hex32[,"text":str]}
//        text with --print-text if utf-8; --echo sends every message back to its sender
//   {"event":"sent","topic":str,"count":N,"peers":N,"drive":hex32}
//   {"event":"left","discovery_key":hex32,"drive":hex32,"disconnected":N,"connections":N}
//        swarm.leave resolved (see "leave"); disconnected: connections destroyed and closed
//        ("disconnect"); connections: swarm.connections.size then
//   {"event":"flushed","connections":N}   swarm.flush() resolved
//   {"event":"cmd-error","cmd":str,"message":str}
//   {"event":"error","message":str}                       fatal; exit code 1
// Commands (stdin):
//   {"cmd":"send","topic":str,"size":N,"seed":K,"count"?:1,"to"?:hex32,"drive"?:hex32}
//   {"cmd":"send","topic":str,"sizes":[N,...],"seed":K,"to"?:hex32,"drive"?:hex32}
//   {"cmd":"send_text","topic":str,"text":str,"to"?:hex32,"drive"?:hex32}
//        as hyperdrive_peer.mjs; "drive" picks the drive (default: the main one)
//   {"cmd":"leave","discovery_key":hex32,"disconnect"?:false}
//        await swarm.leave(discoveryKey) (unannounce, stop looking up), then "left". hyperswarm's
//        leave closes no connection: the drive goes on replicating on the ones it has.
//        "disconnect": true then also destroys the connections to that drive's peers (as an app
//        leaving its last topic would), so they see connection-close and peer-remove. Only a
//        peer that we dialled (connection "client": true) stays away: one that dialled us dials
//        again about 1 s later (hyperswarm retries a lost client connection while it is still
//        joined, and our DHT server, which leave does not close, accepts it)
//   {"cmd":"join","discovery_key":hex32}   swarm.join that drive's topic again, then "joined".
//        On a topic still joined this announces and looks up anew (hyperswarm by itself looks
//        again only every 10 minutes): the cure when two peers joined at the same moment and
//        each looked up before the other's announcement landed (seen here 2-3 times in 20)
//   {"cmd":"flush"}                        await swarm.flush(), then "flushed"
//   {"cmd":"exit"}   swarm.destroy(), close the drives and the store, exit 0 (forced after 4 s)

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
  commands,
  commandError,
  sizesOf,
  seedOf
} from './_common.mjs'

const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const Hyperswarm = require('hyperswarm')
const HyperDHT = require('hyperdht')
const crypto = require('hypercore-crypto')

installCrashHandlers()

const args = parseArgs({
  storage: 'string',
  key: 'string',
  'drive-key': 'list',
  bootstrap: 'list',
  seed: 'string',
  topic: 'list',
  echo: 'flag',
  'print-text': 'flag',
  server: 'string',
  client: 'string',
  'quick-firewall': 'string'
})
if (!args.storage) throw new Error('--storage DIR is required')
if (!args.bootstrap.length) throw new Error('--bootstrap HOST:PORT is required (the public DHT is never used)')
const topics = args.topic.length ? args.topic : ['chat']
const keyPair = crypto.keyPair(args.seed ? fromHex(args.seed, '--seed', 32) : undefined)
const bootstrap = args.bootstrap.map(parseHostPort)
const server = parseBool(args.server, '--server', true)
const client = parseBool(args.client, '--client', true)
if (!server && !client) throw new Error('--server false and --client false: nothing to join')
const quickFirewall = parseBool(args['quick-firewall'], '--quick-firewall', true)

function parseBool(value, what, dflt) {
  if (value === null) return dflt
  if (value === 'true') return true
  if (value === 'false') return false
  throw new Error(`${what}: expected true or false, got ${JSON.stringify(value)}`)
}

function parseHostPort(value) {
  const colon = value.lastIndexOf(':')
  const port = Number(value.slice(colon + 1))
  if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad --bootstrap ${value}`)
  return { host: value.slice(0, colon), port }
}

const store = new Corestore(args.storage)
const utf8 = new TextDecoder('utf-8', { fatal: true })

// One drive of this process: its key, how to (re)open it, and the open Hyperdrive with its extensions.
class DriveState {
  constructor(key) {
    this.key = key // null until the main drive is created
    this.drive = null
    this.extensions = new Map()
    this.discovery = null
  }

  get id() {
    return hex(this.key)
  }

  get discoveryKey() {
    return crypto.discoveryKey(this.key)
  }

  async open() {
    // a store session per drive: drive.close() closes the corestore it was given
    const session = store.session()
    const drive = this.key ? new Hyperdrive(session, this.key) : new Hyperdrive(session)
    await drive.ready()
    this.key = drive.key
    this.drive = drive
    const id = this.id
    this.extensions = new Map()
    for (const topic of topics) {
      const ext = drive.core.registerExtension('peersockets/' + topic, {
        encoding: 'binary',
        onmessage(buf, peer) {
          const event = { event: 'ext', topic, length: buf.byteLength, sha256: sha256(buf), from: hex(peer.remotePublicKey), drive: id }
          if (args['print-text']) {
            try {
              event.text = utf8.decode(buf)
            } catch {
              // not utf-8: no text field
            }
          }
          emit(event)
          if (args.echo) ext.send(buf, peer)
        }
      })
      this.extensions.set(topic, ext)
    }
    drive.core.on('peer-add', (peer) => {
      if (!closing) emit({ event: 'peer-add', remote_public_key: hex(peer.remotePublicKey), drive: id })
    })
    drive.core.on('peer-remove', (peer) => {
      if (!closing) emit({ event: 'peer-remove', remote_public_key: hex(peer.remotePublicKey), drive: id })
    })
  }

  async close() {
    const drive = this.drive
    this.drive = null
    this.extensions = new Map()
    if (drive) await drive.close()
  }
}

const main = new DriveState(args.key ? fromHex(args.key, '--key', 32) : null)
await main.open()
if (!args.key) await main.drive.put('/hello.txt', Buffer.from('hello from swarm_peer.mjs\n'))
const drives = [main]
for (const value of args['drive-key']) {
  const state = new DriveState(fromHex(value, '--drive-key', 32))
  if (drives.some((d) => d.key.equals(state.key))) throw new Error(`drive ${value} given twice`)
  await state.open()
  drives.push(state)
}

let closing = false

emit({
  event: 'ready',
  key: main.id,
  discovery_key: hex(main.discoveryKey),
  public_key: hex(keyPair.publicKey),
  writable: main.drive.writable,
  version: main.drive.version,
  topics,
  drives: drives.map((d) => ({ key: d.id, discovery_key: hex(d.discoveryKey) }))
})

const dht = new HyperDHT({ bootstrap, host: '127.0.0.1', port: [0, 0], quickFirewall })
const swarm = new Hyperswarm({ keyPair, dht })

swarm.on('connection', (conn, info) => {
  const remote = hex(conn.remotePublicKey)
  const raw = conn.rawStream
  emit({
    event: 'connection',
    remote_public_key: remote,
    initiator: conn.isInitiator,
    handshake_hash: hex(conn.handshakeHash),
    client: info.client,
    topics: info.topics.map((t) => hex(t)),
    socket: socketKind(conn),
    remote_host: raw ? raw.remoteHost : null,
    remote_port: raw ? raw.remotePort : null
  })
  let error = null
  conn.on('error', (err) => {
    error = err
    log(`connection ${remote.slice(0, 8)} error:`, err.message)
  })
  conn.on('close', () => {
    if (!closing) emit({ event: 'connection-close', remote_public_key: remote, error: error ? error.message : null })
  })
  store.replicate(conn)
})

// Which of the DHT node's sockets carries a connection (a puncher socket: holepunched).
function socketKind(conn) {
  const raw = conn.rawStream
  if (!raw || !raw.socket) return null
  if (raw.socket === dht.io.serverSocket) return 'server'
  if (raw.socket === dht.io.clientSocket) return 'client'
  return 'puncher'
}

await dht.fullyBootstrapped()
{
  const { host, port } = dht.address()
  const ports = { server_port: dht.io.serverSocket.address().port, client_port: dht.io.clientSocket.address().port }
  emit({ event: 'dht-ready', host, port, firewalled: dht.firewalled, ...ports })
}

async function join(states) {
  for (const state of states) state.discovery = swarm.join(state.discoveryKey, { server, client })
  if (server) await Promise.all(states.map((s) => s.discovery.flushed()))
  await swarm.flush()
  if (closing) return
  for (const state of states) emit({ event: 'joined', discovery_key: hex(state.discoveryKey), drive: state.id })
}

function driveByDiscoveryKey(value) {
  const dk = fromHexCmd(value, 'discovery_key')
  const state = drives.find((d) => d.discoveryKey.equals(dk))
  if (!state) throw commandError(`no drive with discovery key ${value}`)
  return state
}

function driveFor(cmd) {
  if (cmd.drive === undefined || cmd.drive === null) return main
  const key = fromHexCmd(cmd.drive, 'drive')
  const state = drives.find((d) => d.key.equals(key))
  if (!state) throw commandError(`no drive ${cmd.drive}`)
  return state
}

function fromHexCmd(value, what) {
  try {
    return fromHex(value, what, 32)
  } catch (err) {
    throw commandError(err.message)
  }
}

function extensionFor(state, cmd) {
  const ext = state.extensions.get(cmd.topic)
  if (!ext) throw commandError(`topic ${JSON.stringify(cmd.topic)} is not registered (use --topic)`)
  return ext
}

function peersFor(state, cmd) {
  const peers = state.drive.core.peers
  if (cmd.to === undefined || cmd.to === null) return peers
  const to = fromHexCmd(cmd.to, 'to')
  const found = peers.filter((p) => p.remotePublicKey && p.remotePublicKey.equals(to))
  if (found.length === 0) throw commandError(`no peer ${cmd.to} on drive ${state.id}`)
  return found
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'send': {
      const state = driveFor(cmd)
      const ext = extensionFor(state, cmd)
      const sizes = sizesOf(cmd)
      const seed = seedOf(cmd)
      const peers = peersFor(state, cmd)
      for (let j = 0; j < sizes.length; j++) {
        const buf = pattern(sizes[j], seed + j)
        for (const peer of peers) ext.send(buf, peer)
      }
      emit({ event: 'sent', topic: cmd.topic, count: sizes.length, peers: peers.length, drive: state.id })
      return
    }
    case 'send_text': {
      const state = driveFor(cmd)
      const ext = extensionFor(state, cmd)
      if (typeof cmd.text !== 'string') throw commandError('"text" must be a string')
      const peers = peersFor(state, cmd)
      const buf = Buffer.from(cmd.text, 'utf-8')
      for (const peer of peers) ext.send(buf, peer)
      emit({ event: 'sent', topic: cmd.topic, count: 1, peers: peers.length, drive: state.id })
      return
    }
    case 'leave': {
      const state = driveByDiscoveryKey(cmd.discovery_key)
      if (cmd.disconnect !== undefined && typeof cmd.disconnect !== 'boolean') throw commandError('"disconnect" must be a boolean')
      await swarm.leave(state.discoveryKey)
      state.discovery = null
      let dropped = 0
      if (cmd.disconnect) {
        const keys = new Set(state.drive.core.peers.map((p) => hex(p.remotePublicKey)))
        const closed = []
        for (const conn of [...swarm.connections]) {
          if (!keys.has(hex(conn.remotePublicKey))) continue
          closed.push(new Promise((resolve) => conn.once('close', resolve)))
          conn.destroy()
        }
        dropped = closed.length
        await Promise.all(closed)
      }
      emit({
        event: 'left',
        discovery_key: hex(state.discoveryKey),
        drive: state.id,
        disconnected: dropped,
        connections: swarm.connections.size
      })
      return
    }
    case 'join': {
      const state = driveByDiscoveryKey(cmd.discovery_key)
      await join([state])
      return
    }
    case 'flush':
      await swarm.flush()
      emit({ event: 'flushed', connections: swarm.connections.size })
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
    await swarm.destroy()
    for (const state of drives) await state.close()
    await store.close()
  } catch (err) {
    log('error while closing:', err.message)
  }
  clearTimeout(force)
  exitNow(0)
}

commands(handle, shutdown)
process.on('SIGTERM', () => shutdown())

await join(drives)
