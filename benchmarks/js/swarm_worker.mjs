// Benchmark worker: a hyperdrive app on hyperswarm 4 (the npm packages pinned in
// tests/interop/js), driven by benchmarks/run.py (benchmarks/swarm.py) for the swarm_join
// workload: the drive's owner, waiting in the drive's swarm and echoing topic messages, or
// the peer that joins that swarm by the drive's key alone and is timed until its first
// message comes back.
//
//   node --expose-gc benchmarks/js/swarm_worker.mjs
//
// Everything is on 127.0.0.1: every HyperDHT is new HyperDHT({ bootstrap, host: '127.0.0.1',
// port: [0, 0] }) (port [0, 0]: a port the OS picks, see benchmarks/js/dht_worker.mjs), as a
// hyperdrive app on a local testnet makes it; otherwise hyperswarm's and hyperdht's defaults.
// Topic messages are hypercore extension messages 'peersockets/<topic>' on the drive's core
// (the peersockets wire).
//
// Protocol: JSON lines, as benchmarks/js/worker.mjs (commands on stdin, one at a time, in
// order; events on stdout; errors: {"event":"error","message":str} then exit 1). The same
// protocol is spoken by benchmarks/swarm_worker.py.
//   {"cmd":"own","bootstrap":[[host,port]],"topic":str,"key":hex|null}
//       -> {"event":"owning","key":hex,"discovery_key":hex,"public_key":hex,"ms":F}
//       The owner: Corestore (temporary directory) + new Hyperdrive(store) (the key is
//       ignored: a JavaScript owner makes its drive), ready; the extension echoes every
//       message to its sender (ext.send(buf, peer) from onmessage); a swarm with a new key
//       pair, every connection handed to store.replicate(conn), swarm.join(discoveryKey),
//       await discovery.flushed() and swarm.flush(): announced, and waiting. ms: how long
//       that took (from new HyperDHT to flushed).
//   {"cmd":"join_time","bootstrap":[[host,port]],"key":hex,"owner":hex,"topic":str,
//    "count":N,"warmup":W,"size":S,"timeout":T}
//       -> {"event":"join_times","ms":[...N],"cold_ms":[...W],"phases":[{...}...N],
//           "paths":[...N],"sockets":[...N],"connections":[...N],"teardown_ms":[...W+N]}
//       W + N joins in sequence, each a new peer: a new Corestore (temporary directory) with
//       new Hyperdrive(store, key), ready, the extension registered (untimed: the app's
//       storage); then t0 = now(); new HyperDHT(...), new Hyperswarm({ keyPair: a new one,
//       dht }), on 'connection' store.replicate(conn), swarm.join(drive.discoveryKey); on the
//       drive core's 'peer-add' of the owner (its public key is "owner"), ext.send(payload,
//       peer) with S bytes; when the same bytes come back from the owner, t = now() - t0.
//       Then (untimed) swarm.destroy() (unannounces, closes the DHT node), the drive and
//       the store. phases: ms from t0 to "bootstrapped" (dht.fullyBootstrapped() resolved),
//       "announced" (discovery.flushed() resolved: the announce query, which also finds
//       the peers, is done; null if the echo came first), "dial" (the first dht.connect call hyperswarm makes: the lookup found the owner),
//       "connection" (hyperswarm's 'connection': the secret stream is open), "peer" (the
//       owner's peer-add) and "echo". A join that takes longer than T seconds fails the run.
//       connections: how many connections to the owner hyperswarm opened by the echo (more
//       than 1: one was lost and made again); teardown_ms: how long each leave took.
//   {"cmd":"stats"} -> {"event":"stats","echoed":N}   (the owner: messages echoed)
//   {"cmd":"exit"}                                       -> exits 0
//
// The path of the joiner's connection to the owner that carried the echo is inferred as
// dht_worker.mjs does it (hyperdht does not report it): "open" when dht.stats.punches.open
// went up; else "holepunch" when the stream is on a puncher socket; else "lan" when it is
// on the node's server socket and the node is firewalled; else "passive". sockets: which
// of the joiner's DHT sockets carries it ("client", "server", "puncher").

import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { emit, installFatalHandlers, isExiting, log, now, serve } from './worker_io.mjs'

const require = createRequire(new URL('../../tests/interop/js/package.json', import.meta.url))
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const Hyperswarm = require('hyperswarm')
const HyperDHT = require('hyperdht')
const crypto = require('hypercore-crypto')

const HOST = '127.0.0.1'
const ANY_PORT = [0, 0]

installFatalHandlers('[js swarm worker]')

if (process.argv.length > 2) throw new Error(`unknown argument ${process.argv[2]}`)

const fromPairs = (list) => list.map(([host, port]) => ({ host, port }))
const ms = (t0, t) => (t === null ? null : Number(t - t0) / 1e6)

// What is open now (closed at exit): the owner's, and a joiner's while it runs.
const open = new Set() // { swarm, drive, store, storage }
let echoed = 0

async function openDrive(key) {
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'peersockets-bench-js-swarm-'))
  const store = new Corestore(storage)
  const drive = key ? new Hyperdrive(store, key) : new Hyperdrive(store)
  await drive.ready()
  const app = { swarm: null, drive, store, storage }
  open.add(app)
  return app
}

async function closeApp(app) {
  open.delete(app)
  try {
    if (app.swarm) await app.swarm.destroy()
    await app.drive.close()
    await app.store.close()
  } finally {
    fs.rmSync(app.storage, { recursive: true, force: true })
  }
}

function swarmOn(app, bootstrap) {
  const dht = new HyperDHT({ bootstrap: fromPairs(bootstrap), host: HOST, port: ANY_PORT })
  const swarm = new Hyperswarm({ keyPair: crypto.keyPair(), dht })
  app.swarm = swarm
  swarm.on('connection', (conn) => {
    const opened = now()
    const remote = conn.remotePublicKey.toString('hex').slice(0, 8)
    conn.on('error', (err) => {
      // a joiner that leaves resets its connections: expected, not logged
      if (isExiting() || err.code === 'ECONNRESET') return
      const kind = socketKind(dht, conn)
      log(`connection ${remote} (${kind}) error ${ms(opened, now()).toFixed(0)} ms after it opened:`, err.message)
    })
    app.store.replicate(conn)
  })
  return swarm
}

function socketKind(dht, conn) {
  const raw = conn.rawStream
  if (!raw || !raw.socket) return 'none'
  if (raw.socket === dht.io.clientSocket) return 'client'
  if (raw.socket === dht.io.serverSocket) return 'server'
  return 'puncher'
}

function pathOf(dht, kind, opensBefore) {
  if (dht.stats.punches.open > opensBefore) return 'open'
  if (kind === 'puncher') return 'holepunch'
  if (kind === 'server' && dht.firewalled) return 'lan'
  if (kind === 'client' || kind === 'server') return 'passive'
  return kind
}

// One join: the time from t0 (new HyperDHT) to the owner's echo of our first message.
async function timeOneJoin(cmd, key, owner, payload) {
  const app = await openDrive(key)
  const result = {}
  try {
    let resolveEcho
    let rejectEcho
    const echo = new Promise((resolve, reject) => {
      resolveEcho = resolve
      rejectEcho = reject
    })
    const ext = app.drive.core.registerExtension('peersockets/' + cmd.topic, {
      encoding: 'binary',
      onmessage(buf, peer) {
        if (peer.remotePublicKey && peer.remotePublicKey.equals(owner) && buf.equals(payload)) {
          resolveEcho({ at: now(), stream: peer.stream })
        }
      }
    })
    const t = { bootstrapped: null, announced: null, dial: null, connection: null, peer: null, echo: null }
    let ownerConnections = 0
    const t0 = now()
    const swarm = swarmOn(app, cmd.bootstrap)
    const dht = swarm.dht
    const opensBefore = dht.stats.punches.open
    dht.fullyBootstrapped().then(
      () => {
        t.bootstrapped = now()
      },
      () => {} // destroyed (by the leave) before it finished: no phase
    )
    const connect = dht.connect.bind(dht)
    dht.connect = (publicKey, opts) => {
      if (t.dial === null && publicKey.equals(owner)) t.dial = now()
      return connect(publicKey, opts)
    }
    swarm.on('connection', (conn) => {
      if (!conn.remotePublicKey.equals(owner)) return
      ownerConnections++
      if (t.connection === null) t.connection = now()
    })
    app.drive.core.on('peer-add', (peer) => {
      if (t.peer !== null || !peer.remotePublicKey.equals(owner)) return
      t.peer = now()
      ext.send(payload, peer)
    })
    const discovery = swarm.join(app.drive.discoveryKey)
    discovery.flushed().then(
      () => {
        t.announced = now()
      },
      () => {}
    )
    const timer = setTimeout(() => rejectEcho(new Error(`no echo within ${cmd.timeout} s`)), cmd.timeout * 1000)
    let stream
    try {
      ;({ at: t.echo, stream } = await echo)
    } finally {
      clearTimeout(timer)
    }
    const kind = socketKind(dht, stream)
    Object.assign(result, {
      ms: ms(t0, t.echo),
      phases: {
        bootstrapped: ms(t0, t.bootstrapped),
        announced: ms(t0, t.announced),
        dial: ms(t0, t.dial),
        connection: ms(t0, t.connection),
        peer: ms(t0, t.peer),
        echo: ms(t0, t.echo)
      },
      path: pathOf(dht, kind, opensBefore),
      socket: kind,
      owner_connections: ownerConnections
    })
  } finally {
    const t1 = now()
    await closeApp(app)
    result.teardown_ms = ms(t1, now())
  }
  return result
}

const handlers = {
  async own(cmd) {
    const app = await openDrive(null)
    const drive = app.drive
    const ext = drive.core.registerExtension('peersockets/' + cmd.topic, {
      encoding: 'binary',
      onmessage(buf, peer) {
        echoed++
        ext.send(buf, peer)
      }
    })
    const t0 = now()
    const swarm = swarmOn(app, cmd.bootstrap)
    const discovery = swarm.join(drive.discoveryKey)
    await discovery.flushed()
    await swarm.flush()
    emit({
      event: 'owning',
      key: drive.key.toString('hex'),
      discovery_key: drive.discoveryKey.toString('hex'),
      public_key: swarm.keyPair.publicKey.toString('hex'),
      ms: ms(t0, now())
    })
  },
  async join_time(cmd) {
    const key = Buffer.from(cmd.key, 'hex')
    const owner = Buffer.from(cmd.owner, 'hex')
    const payload = Buffer.alloc(cmd.size, 0x61)
    const out = { ms: [], cold_ms: [], phases: [], paths: [], sockets: [], connections: [], teardown_ms: [] }
    for (let i = 0; i < (cmd.warmup || 0) + cmd.count; i++) {
      const r = await timeOneJoin(cmd, key, owner, payload)
      out.teardown_ms.push(r.teardown_ms)
      if (i < (cmd.warmup || 0)) {
        out.cold_ms.push(r.ms)
        continue
      }
      out.ms.push(r.ms)
      out.phases.push(r.phases)
      out.paths.push(r.path)
      out.sockets.push(r.socket)
      out.connections.push(r.owner_connections)
    }
    emit({ event: 'join_times', ...out })
  },
  async stats() {
    emit({ event: 'stats', echoed })
  }
}

async function close() {
  for (const app of [...open]) await closeApp(app).catch((err) => log('close:', err.message))
}

serve({ handlers, close, forceExitMs: 4000 })
