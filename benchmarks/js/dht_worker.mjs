// Benchmark worker: a hyperdht 6 node (the npm package pinned in tests/interop/js),
// driven by benchmarks/run.py (benchmarks/dht.py) for the DHT workloads (dht_connect,
// dht_throughput); also the local testnet those workloads run on.
//
//   node --expose-gc benchmarks/js/dht_worker.mjs
//
// Everything is on 127.0.0.1. Every HyperDHT this worker makes gets `port: [0, 0]`: an
// empty range for dht-rpc's port scan, so it binds a port the OS picks (HyperDHT turns
// port 0 into its default 49737, which parallel runs would race for;
// tests/interop/js/dht_peer.mjs explains it). Otherwise the nodes have hyperdht's
// default options (quickFirewall, localConnection, holepunch, ...).
//
// Protocol: JSON lines, as benchmarks/js/worker.mjs (commands on stdin, one at a time, in
// order; events on stdout; errors: {"event":"error","message":str} then exit 1). The same
// protocol is spoken by benchmarks/dht_worker.py.
//   {"cmd":"testnet","size":N}  -> {"event":"testnet","bootstrap":[[host,port]],"nodes":[[host,port],...]}
//       N persistent nodes (ephemeral: false, firewalled: false) as hyperdht/testnet's
//       createTestnet makes them: the first with no bootstrap, each later one
//       bootstrapping from the first, each awaited with fullyBootstrapped().
//   {"cmd":"dht_open","bootstrap":[[host,port],...]} -> {"event":"dht_ready","port":P,"firewalled":bool}
//       one client node, new HyperDHT({ bootstrap, host }), default options;
//       await fullyBootstrapped().
//   {"cmd":"dht_listen","mode":"echo"|"peer"} -> {"event":"dht_listening","public_key":hex,"firewalled":bool}
//       a server on a new key pair: node.createServer(onconnection), await listen(keyPair).
//       echo: each connection writes back every chunk it receives, from its 'data'
//       handler, and ends its side when the remote ends. peer: each connection is
//       handed to store.replicate(socket) (what hyperswarm does): a drive peer (init first).
//   {"cmd":"dht_connect","public_key":hex} -> {"event":"connected","start_ns","end_ns","path","socket"}
//       a drive peer (init first) dials: socket = node.connect(publicKey, { keyPair })
//       with a new key pair, store.replicate(socket), await socket.opened.
//   {"cmd":"connect_time","public_key":hex,"count":N,"warmup":W}
//       -> {"event":"connect_times","ms":[...N],"paths":[...N],"sockets":[...N],"punches":{...}}
//       W + N times in sequence, each with the same key pair (one for the command):
//       t0 = now(); socket = node.connect(publicKey, { keyPair }); write one byte; wait
//       until a byte comes back (the server echoes); record now() - t0; destroy the
//       socket and await its 'close' (untimed). The W warm-ups are not reported.
//       socket: which UDP socket carries the stream (the node's "client" or "server"
//       socket, or a holepunch "puncher"); path: what that and node.stats.punches say
//       about the way hyperdht took (below); punches: node.stats.punches after them.
//   {"cmd":"dht_stats"} -> {"event":"dht_stats","firewalled":bool,"punches":{...},"accepts":{socket:N}}
//       accepts: the incoming connections of this worker's servers, by socket.
//   The drive peer's commands, exactly as benchmarks/js/worker.mjs's (same code):
//   {"cmd":"init","key":hex|null,"topic":str|null}  -> {"event":"init","key":hex,"rss":N}
//   {"cmd":"wait_peers","count":N}                    -> {"event":"peers","count":N,"t_ns"}
//   {"cmd":"recv","count":N}  -> {"event":"armed"} ... {"event":"received","count","bytes","first_ns","last_ns"}
//   {"cmd":"send","count":N,"size":S} -> {"event":"sent","messages","start_ns","end_ns","drain_waits"}
//   {"cmd":"exit"}                                    -> exits 0
// Timestamps are process.hrtime.bigint() (CLOCK_MONOTONIC), sent as decimal strings.
//
// The path of a JavaScript connect is inferred (hyperdht does not report it): "open"
// when node.stats.punches.open went up (the server is reachable: straight to its
// address from node.socket); else "holepunch" when the stream is on a puncher socket;
// else "lan" when it is on the node's server socket and the node is firewalled (the LAN
// shortcut: a ping to the server's local address, then the stream over io.serverSocket);
// else "passive": the stream is on the socket the handshake went out from (node.socket),
// connected by connect.js's firewall() hook when the server's first packet arrived there
// (the server, which saw our address, sent its secret-stream header first). Python's
// connector names the same ways "open", "holepunch", "lan" and "passive" (and "relay").

import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { emit, installFatalHandlers, isExiting, log, now, serve } from './worker_io.mjs'

const require = createRequire(new URL('../../tests/interop/js/package.json', import.meta.url))
const HyperDHT = require('hyperdht')

const HOST = '127.0.0.1'
const ANY_PORT = [0, 0] // dht-rpc's port scan over an empty range: it binds port 0

installFatalHandlers('[js dht worker]')

if (process.argv.length > 2) throw new Error(`unknown argument ${process.argv[2]}`)

const nodes = [] // every HyperDHT made here, destroyed at exit (last made first)
let node = null // the client node (dht_open)
const servers = []
const sockets = new Set() // every DHT connection, destroyed at exit
const accepts = {}

// the drive peer (init), as in worker.mjs
let storage = null
let store = null
let drive = null
let ext = null

let peersAdded = 0
const addTimes = []
let peerWaiter = null // { count, resolve }

let mode = null // 'recv' | null
let recvTarget = 0
let recvCount = 0
let recvBytes = 0
let recvFirst = 0n

function onmessage(buf, peer) {
  if (mode !== 'recv') return // between phases: ignore
  const n = ++recvCount
  recvBytes += buf.byteLength
  if (n === 1) recvFirst = now()
  if (n === recvTarget) {
    const last = now()
    mode = null
    emit({ event: 'received', count: n, bytes: recvBytes, first_ns: recvFirst, last_ns: last })
  }
}

const pairs = (list) => list.map((a) => [a.host, a.port])
const fromPairs = (list) => list.map(([host, port]) => ({ host, port }))

// which of the node's UDP sockets carries a connection's UDX stream
function socketKind(socket) {
  const udx = socket.rawStream ? socket.rawStream.socket : null
  if (udx === null || udx === undefined) return 'none'
  if (udx === node.io.clientSocket) return 'client'
  if (udx === node.io.serverSocket) return 'server'
  return 'puncher'
}

function pathOf(kind, opensBefore) {
  if (node.stats.punches.open > opensBefore) return 'open'
  if (kind === 'puncher') return 'holepunch'
  if (kind === 'server' && node.firewalled) return 'lan'
  if (kind === 'client' || kind === 'server') return 'passive'
  return kind
}

function track(socket) {
  sockets.add(socket)
  socket.on('close', () => sockets.delete(socket))
  socket.on('error', (err) => {
    if (!isExiting()) log('connection error:', err.message)
  })
}

function needNode() {
  if (node === null) throw new Error('dht_open first')
}

function needDrive() {
  if (drive === null) throw new Error('init first')
}

// connect, write one byte, wait for the echo: the time in ns; then destroy (untimed)
async function timeOneConnect(publicKey, keyPair) {
  const opensBefore = node.stats.punches.open
  const t0 = now()
  const socket = node.connect(publicKey, { keyPair })
  track(socket)
  const closed = new Promise((resolve) => socket.once('close', resolve))
  try {
    await new Promise((resolve, reject) => {
      socket.once('data', resolve)
      socket.once('error', reject)
      socket.once('close', () => reject(new Error('closed before the echo arrived')))
      socket.write(Buffer.from([0x2a]))
    })
    const ns = Number(now() - t0)
    const kind = socketKind(socket)
    return { ns, kind, path: pathOf(kind, opensBefore) }
  } finally {
    socket.destroy()
    await closed
  }
}

// The commands, by name ("exit" is serve()'s): each answers with its event(s).
const handlers = {
  async testnet(cmd) {
    const first = new HyperDHT({ ephemeral: false, firewalled: false, bootstrap: [], port: ANY_PORT, host: HOST })
    nodes.push(first)
    await first.fullyBootstrapped()
    const bootstrap = [{ host: HOST, port: first.address().port }]
    while (nodes.length < cmd.size) {
      const n = new HyperDHT({ ephemeral: false, firewalled: false, bootstrap, port: ANY_PORT, host: HOST })
      nodes.push(n)
      await n.fullyBootstrapped()
    }
    emit({ event: 'testnet', bootstrap: pairs(bootstrap), nodes: nodes.map((n) => [HOST, n.address().port]) })
  },
  async dht_open(cmd) {
    node = new HyperDHT({ bootstrap: fromPairs(cmd.bootstrap), port: ANY_PORT, host: HOST })
    nodes.push(node)
    await node.fullyBootstrapped()
    emit({ event: 'dht_ready', port: node.address().port, firewalled: node.firewalled })
  },
  async dht_listen(cmd) {
    needNode()
    const peerMode = cmd.mode === 'peer'
    if (peerMode) needDrive()
    else if (cmd.mode !== 'echo') throw new Error(`bad mode ${JSON.stringify(cmd.mode)}`)
    const keyPair = HyperDHT.keyPair()
    const server = node.createServer((socket) => {
      track(socket)
      const kind = socketKind(socket)
      accepts[kind] = (accepts[kind] || 0) + 1
      if (peerMode) {
        store.replicate(socket)
        return
      }
      socket.on('data', (buf) => socket.write(buf))
      socket.on('end', () => socket.end())
    })
    servers.push(server)
    await server.listen(keyPair)
    emit({ event: 'dht_listening', public_key: keyPair.publicKey.toString('hex'), firewalled: node.firewalled })
  },
  async dht_connect(cmd) {
    needNode()
    needDrive()
    const opensBefore = node.stats.punches.open
    const start = now()
    const socket = node.connect(Buffer.from(cmd.public_key, 'hex'), { keyPair: HyperDHT.keyPair() })
    track(socket)
    store.replicate(socket)
    const ok = await socket.opened
    if (!ok) throw new Error('the DHT connection did not open')
    const end = now()
    const kind = socketKind(socket)
    emit({ event: 'connected', start_ns: start, end_ns: end, path: pathOf(kind, opensBefore), socket: kind })
  },
  async connect_time(cmd) {
    needNode()
    const publicKey = Buffer.from(cmd.public_key, 'hex')
    const keyPair = HyperDHT.keyPair()
    const ms = []
    const paths = []
    const kinds = []
    for (let i = 0; i < (cmd.warmup || 0) + cmd.count; i++) {
      const r = await timeOneConnect(publicKey, keyPair)
      if (i < (cmd.warmup || 0)) continue
      ms.push(r.ns / 1e6)
      paths.push(r.path)
      kinds.push(r.kind)
    }
    emit({ event: 'connect_times', ms, paths, sockets: kinds, punches: { ...node.stats.punches } })
  },
  async dht_stats() {
    needNode()
    emit({ event: 'dht_stats', firewalled: node.firewalled, punches: { ...node.stats.punches }, accepts })
  },

  // -- the drive peer: worker.mjs's init, wait_peers, recv and send ----------------------
  async init(cmd) {
    const Corestore = require('corestore')
    const Hyperdrive = require('hyperdrive')
    storage = fs.mkdtempSync(path.join(os.tmpdir(), 'peersockets-bench-js-dht-'))
    store = new Corestore(storage)
    drive = cmd.key ? new Hyperdrive(store, Buffer.from(cmd.key, 'hex')) : new Hyperdrive(store)
    await drive.ready()
    if (cmd.topic) {
      ext = drive.core.registerExtension('peersockets/' + cmd.topic, { encoding: 'binary', onmessage })
    }
    drive.core.on('peer-add', () => {
      peersAdded++
      addTimes.push(now())
      if (peerWaiter !== null && peersAdded >= peerWaiter.count) {
        const w = peerWaiter
        peerWaiter = null
        w.resolve()
      }
    })
    emit({ event: 'init', key: drive.key.toString('hex'), rss: process.memoryUsage().rss })
  },
  async wait_peers(cmd) {
    if (peersAdded < cmd.count) {
      await new Promise((resolve) => {
        peerWaiter = { count: cmd.count, resolve }
      })
    }
    emit({ event: 'peers', count: peersAdded, t_ns: addTimes[cmd.count - 1] })
  },
  async recv(cmd) {
    recvTarget = cmd.count
    recvCount = 0
    recvBytes = 0
    mode = 'recv'
    emit({ event: 'armed' })
  },
  async send(cmd) {
    const buf = Buffer.alloc(cmd.size, 0x61)
    const peers = drive.core.peers.slice()
    let drainWaits = 0
    const start = now()
    for (let i = 0; i < cmd.count; i++) {
      for (const peer of peers) {
        ext.send(buf, peer)
        // protomux records whether the secret-stream accepted the write (streamx
        // backpressure, which follows the UDX stream's): wait for 'drain' if not.
        if (!peer.channel.drained) {
          drainWaits++
          await new Promise((resolve) => peer.protomux.stream.once('drain', resolve))
        }
      }
    }
    emit({ event: 'sent', messages: cmd.count * peers.length, start_ns: start, end_ns: now(), drain_waits: drainWaits })
  }
}

// Destroys the connections, the servers, the drive and the nodes (serve() then exits).
async function close() {
  try {
    for (const socket of sockets) socket.destroy()
    for (const server of servers) await server.close().catch(() => {})
    if (drive) await drive.close()
    if (store) await store.close()
    for (const n of nodes.reverse()) await n.destroy({ force: true }).catch(() => {})
  } finally {
    if (storage) fs.rmSync(storage, { recursive: true, force: true })
  }
}

serve({ handlers, close, forceExitMs: 3000 })
