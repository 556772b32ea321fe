// Benchmark worker: a JavaScript hyperdrive 13 peer process (hypercore 11 extension
// messages over @hyperswarm/secret-stream on loopback TCP), driven by benchmarks/run.py.
//
//   node --expose-gc benchmarks/js/worker.mjs [--transport direct|pipe]
//
// One process holds one Corestore and one Hyperdrive (the owner's, or opened by key)
// and any number of connections ("local peers"): each outgoing connection has its own
// Noise key pair, so the remote sees N distinct peers; the drive's core is shared by
// all of them, as it would be in a real app with many peers.
//
// --transport direct (default): new NoiseSecretStream(isInitiator, socket, { keyPair })
//   handed to store.replicate(stream): what hyperswarm does with its sockets.
// --transport pipe: const s = store.replicate(isInitiator, { keyPair }); s.pipe(socket).pipe(s)
//   (the way tests/interop/js/hyperdrive_peer.mjs does it; one more stream hop).
//
// Protocol: JSON lines. Commands on stdin, one at a time, in order; events on stdout.
// The same protocol is spoken by benchmarks/py_worker.py; see benchmarks/README.md.
//   {"cmd":"init","key":hex|null,"topic":str|null}  -> {"event":"init","key":hex,"rss":N}
//       key null: create a new drive (this process is the owner); else open it by key.
//   {"cmd":"listen"}                                  -> {"event":"listening","port":N}
//   {"cmd":"connect","port":N,"peers":K,"concurrency":C}
//                                                     -> {"event":"connected","start_ns","end_ns"}
//   {"cmd":"wait_peers","count":N}                    -> {"event":"peers","count":N,"t_ns"}
//       t_ns: when the N-th peer-add fired on the drive's core.
//   {"cmd":"recv","count":N}  -> {"event":"armed"} ... {"event":"received","count","bytes","first_ns","last_ns"}
//   {"cmd":"send","count":N,"size":S} -> {"event":"sent","messages","start_ns","end_ns","drain_waits"}
//       N messages of S bytes to every peer of the drive, round robin.
//   {"cmd":"echo"}                                    -> {"event":"echoing"}
//   {"cmd":"ping","rounds":R,"warmup":W,"size":S}     -> {"event":"pinged","rtt_ns":[...R]}
//   {"cmd":"memory"}                                  -> {"event":"memory","rss":N}   (after gc)
//   {"cmd":"exit"}                                    -> exits 0
// Timestamps are process.hrtime.bigint() (CLOCK_MONOTONIC on Linux, the clock of
// Python's time.monotonic_ns()), sent as decimal strings.
// Errors: {"event":"error","message":str} then exit 1.
// The plumbing around the commands (command loop, events, errors, shutdown) is
// benchmarks/js/worker_io.mjs, shared with benchmarks/js/udx_worker.mjs.

import { createRequire } from 'node:module'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { emit, installFatalHandlers, isExiting, log, now, serve } from './worker_io.mjs'

const require = createRequire(new URL('../../tests/interop/js/package.json', import.meta.url))
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const NoiseSecretStream = require('@hyperswarm/secret-stream')
const crypto = require('hypercore-crypto')

const HOST = '127.0.0.1'

installFatalHandlers('[js worker]')

let transport = 'direct'
let pace = 0
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--transport') transport = process.argv[++i]
  else if (process.argv[i] === '--pace') pace = Number(process.argv[++i])
  else throw new Error(`unknown argument ${process.argv[i]}`)
}
if (transport !== 'direct' && transport !== 'pipe') throw new Error(`bad --transport ${transport}`)

const serverKeyPair = crypto.keyPair()
let storage = null
let store = null
let drive = null
let ext = null
let server = null
const sockets = new Set()

// peer-add bookkeeping
let peersAdded = 0
const addTimes = []
let peerWaiter = null // { count, resolve }

// message handling mode
let mode = null // 'recv' | 'echo' | 'ping' | null
let recvTarget = 0
let recvCount = 0
let recvBytes = 0
let recvFirst = 0n
let pongResolve = null

function onmessage(buf, peer) {
  switch (mode) {
    case 'recv': {
      const n = ++recvCount
      recvBytes += buf.byteLength
      if (n === 1) recvFirst = now()
      if (n === recvTarget) {
        const last = now()
        mode = null
        emit({ event: 'received', count: n, bytes: recvBytes, first_ns: recvFirst, last_ns: last })
      }
      return
    }
    case 'echo':
      ext.send(buf, peer)
      return
    case 'ping': {
      const r = pongResolve
      pongResolve = null
      if (r !== null) r()
      return
    }
    default:
      // between phases: ignore
  }
}

function replicate(socket, isInitiator, keyPair) {
  sockets.add(socket)
  socket.setNoDelay(true)
  socket.on('error', (err) => log('socket error:', err.message))
  socket.on('close', () => sockets.delete(socket))
  let noise
  if (transport === 'direct') {
    noise = new NoiseSecretStream(isInitiator, socket, { keyPair })
    store.replicate(noise)
  } else {
    const s = store.replicate(isInitiator, { keyPair })
    s.pipe(socket).pipe(s)
    noise = s.noiseStream
  }
  noise.on('error', (err) => {
    if (!isExiting()) log('stream error:', err.message)
  })
  return noise
}

// The commands, by name ("exit" is serve()'s): each answers with its event(s).
const handlers = {
  async init(cmd) {
    storage = fs.mkdtempSync(path.join(os.tmpdir(), 'peersockets-bench-js-'))
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
  async listen() {
    server = net.createServer({ noDelay: true }, (socket) => replicate(socket, false, serverKeyPair))
    await new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, HOST, 511, resolve)
    })
    emit({ event: 'listening', port: server.address().port })
  },
  async connect(cmd) {
    const total = cmd.peers
    const concurrency = Math.max(1, cmd.concurrency || 64)
    const start = now()
    let next = 0
    async function lane() {
      while (next < total) {
        next++
        const socket = net.connect({ port: cmd.port, host: HOST, noDelay: true })
        const noise = replicate(socket, true, crypto.keyPair())
        const ok = await noise.opened
        if (!ok) throw new Error('handshake failed')
      }
    }
    const lanes = []
    for (let i = 0; i < Math.min(concurrency, total); i++) lanes.push(lane())
    await Promise.all(lanes)
    emit({ event: 'connected', start_ns: start, end_ns: now() })
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
    let sinceYield = 0
    const start = now()
    for (let i = 0; i < cmd.count; i++) {
      for (const peer of peers) {
        if (pace > 0 && ++sinceYield >= pace) {
          sinceYield = 0
          await new Promise(setImmediate)
        }
        ext.send(buf, peer)
        // protomux records whether the secret-stream accepted the write (streamx
        // backpressure, which follows the TCP socket's): wait for 'drain' if not.
        if (!peer.channel.drained) {
          drainWaits++
          await new Promise((resolve) => peer.protomux.stream.once('drain', resolve))
        }
      }
    }
    emit({ event: 'sent', messages: cmd.count * peers.length, start_ns: start, end_ns: now(), drain_waits: drainWaits })
  },
  async echo() {
    mode = 'echo'
    emit({ event: 'echoing' })
  },
  async ping(cmd) {
    const buf = Buffer.alloc(cmd.size || 1, 0x70)
    const peer = drive.core.peers[0]
    const rtts = []
    mode = 'ping'
    for (let i = 0; i < cmd.warmup + cmd.rounds; i++) {
      const pong = new Promise((resolve) => {
        pongResolve = resolve
      })
      const t0 = now()
      ext.send(buf, peer)
      await pong
      if (i >= cmd.warmup) rtts.push(Number(now() - t0))
    }
    mode = null
    emit({ event: 'pinged', rtt_ns: rtts })
  },
  async memory() {
    if (global.gc) {
      global.gc()
      global.gc()
    }
    emit({ event: 'memory', rss: process.memoryUsage().rss, gc: !!global.gc })
  },
}

// Releases the drive, the store, the sockets and the storage (serve() then exits).
async function close() {
  try {
    if (server) server.close()
    for (const socket of sockets) socket.destroy()
    if (drive) await drive.close()
    if (store) await store.close()
  } finally {
    if (storage) fs.rmSync(storage, { recursive: true, force: true })
  }
}

serve({ started: { transport }, handlers, close, forceExitMs: 3000 })
