// A terminal chat on a hyperdrive's peersockets topic, from a JavaScript hyperdrive 13 app.
// It talks to examples/chat.py and to `peersockets chat` (Python), and to itself.
//
// Run the two examples together, from the repository root, in two terminals:
//
//   node examples/js/chat.mjs --listen 127.0.0.1:4000          # creates a drive, prints its key
//   python examples/chat.py KEY --connect 127.0.0.1:4000       # KEY: the drive key printed above
//
// or the other way round (the JavaScript side opens the drive by its key):
//
//   python examples/chat.py KEY --listen 127.0.0.1:4000        # KEY: e.g. from `peersockets keygen`
//   node examples/js/chat.mjs --key KEY --connect 127.0.0.1:4000
//
// With neither --listen nor --connect (or with --bootstrap), it finds the drive's other peers
// on the DHT, as hyperdrive apps do: it joins the drive's discovery key on hyperswarm (announces it and
// looks up who else did) and replicates over every connection hyperswarm makes. Two chats
// on one machine, on a local DHT network of three Python nodes, in three terminals:
//
//   peersockets dht-node --port 49737 &                                # a local DHT network:
//   peersockets dht-node --port 49738 --bootstrap 127.0.0.1:49737 &    # three nodes (see below)
//   peersockets dht-node --port 49739 --bootstrap 127.0.0.1:49737
//
//   node examples/js/chat.mjs --bootstrap 127.0.0.1:49737              # creates a drive, prints its key
//   node examples/js/chat.mjs --key KEY --bootstrap 127.0.0.1:49737    # KEY: the drive key printed above
//
// Why three: on a network of one or two nodes, hyperswarm's connections often open on the
// dialling side only; each such one is dropped after about 14 s and dialled again, so the
// chats may take from 15 s to minutes to meet. With these three Python nodes they meet at once
// (a network of hyperdht's own JavaScript nodes needed four).
// Without --bootstrap it uses the public Hyperswarm DHT (hyperswarm's default bootstrap nodes).
//
// Each line typed is sent to every peer of the drive; Ctrl-D or Ctrl-C quits. Joins, leaves and
// messages are printed as `peersockets chat` and examples/chat.py print them, peers numbered
// from 1 in the order they join (never reused):
//
//   * peer 1 cd85ce91 joined (1 peer connected)
//   [peer 1 cd85ce91] hello
//   * peer 1 cd85ce91 left (0 peers connected); waiting for peers
//
// Options: --key KEY (hex, z-base-32 or hyper://KEY/; default: create a new drive),
// --listen HOST:PORT (port 0: any free port), --connect HOST:PORT (repeatable),
// --bootstrap HOST:PORT (repeatable: the DHT's bootstrap nodes; with --listen/--connect it adds
// the DHT to them),
// --topic NAME (default chat), --storage DIR (default: a temporary folder, removed at exit).
//
// The npm packages are the pinned ones of the interop tests; install them once with
//   npm ci --prefix tests/interop/js

import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'

const require = createRequire(new URL('../../tests/interop/js/package.json', import.meta.url))
const Corestore = require('corestore')
const Hyperdrive = require('hyperdrive')
const crypto = require('hypercore-crypto')
const idEncoding = require('hypercore-id-encoding')

function die(message) {
  console.error(`chat.mjs: error: ${message}`)
  process.exit(1)
}

// What the Python chats say when an address cannot be used (peersockets.swarm's reasons).
const REASONS = {
  EADDRINUSE: 'address already in use (choose another port, or 0 for any free one)',
  ECONNREFUSED: 'connection refused (nothing is listening there)',
  EADDRNOTAVAIL: 'address not available on this machine',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ECONNRESET: 'connection reset by the remote'
}
const reason = (err) => REASONS[err.code] || err.message

// A message as one terminal-safe line: control and other unprintable characters are shown
// escaped, as Python's str.isprintable and unicode_escape do (\x1b, \n, \u200b).
const UNPRINTABLE = /(?! )[\p{C}\p{Z}]/gu
const ESCAPES = { '\t': '\\t', '\n': '\\n', '\r': '\\r' }
function printable(text) {
  return text.replace(UNPRINTABLE, (c) => {
    if (ESCAPES[c]) return ESCAPES[c]
    const code = c.codePointAt(0)
    if (code < 0x100) return '\\x' + code.toString(16).padStart(2, '0')
    if (code < 0x10000) return '\\u' + code.toString(16).padStart(4, '0')
    return '\\U' + code.toString(16).padStart(8, '0')
  })
}

function hostPort(text, option) {
  const match = /^(?:(.*):)?([0-9]{1,5})$/.exec(text)
  if (!match || Number(match[2]) > 65535) die(`${option}: not a HOST:PORT address: ${JSON.stringify(text)}`)
  return { host: match[1] || '127.0.0.1', port: Number(match[2]) }
}

function driveKey(text) {
  const bare = text.replace(/^hyper:\/\//i, '').split(/[/?#]/)[0]
  try {
    return idEncoding.decode(bare)
  } catch {
    die(`--key: not a drive key: ${JSON.stringify(text)} (64 hex or 52 z-base-32 characters)`)
  }
}

let args
try {
  args = parseArgs({
    options: {
      key: { type: 'string' },
      listen: { type: 'string' },
      connect: { type: 'string', multiple: true, default: [] },
      bootstrap: { type: 'string', multiple: true, default: [] },
      topic: { type: 'string', default: 'chat' },
      storage: { type: 'string' }
    }
  }).values
} catch (err) {
  die(err.message)
}

// No address to listen on or dial: find the drive's peers on the DHT (the public one unless
// --bootstrap names another). Addresses alone: TCP only, the DHT never used.
const dhtMode = args.bootstrap.length > 0 || (!args.listen && args.connect.length === 0)
const bootstrap = args.bootstrap.map((address) => hostPort(address, '--bootstrap'))
const short = (key) => key.toString('hex').slice(0, 8)
const connected = (n) => `${n} peer${n === 1 ? '' : 's'} connected`
// said when the last peer leaves: can anyone still reach us?
const alone = dhtMode
  ? 'waiting for peers (it will be found again when it returns)'
  : args.listen
    ? 'waiting for peers'
    : 'no peer can reach this chat now (it neither listens nor uses the DHT)'
let closing = false
const temporary = !args.storage
const storage = args.storage || fs.mkdtempSync(path.join(os.tmpdir(), 'peersockets-chat-'))
const keyPair = crypto.keyPair() // this process's identity on every connection
const store = new Corestore(storage)
const drive = args.key ? new Hyperdrive(store, driveKey(args.key)) : new Hyperdrive(store)
await drive.ready()

// The drive's peers, numbered as peersockets numbers them: from 1 in the order they join,
// never reused; one remote key is one peer, however many connections it has at once.
let lastId = 0
const drivePeers = new Map() // remote public key (hex) -> { id, channels }

drive.core.on('peer-add', (peer) => {
  const key = peer.remotePublicKey.toString('hex')
  const known = drivePeers.get(key)
  if (known) {
    known.channels++
    return
  }
  const id = ++lastId
  drivePeers.set(key, { id, channels: 1 })
  console.log(`* peer ${id} ${short(peer.remotePublicKey)} joined (${connected(drivePeers.size)})`)
})
drive.core.on('peer-remove', (peer) => {
  const key = peer.remotePublicKey.toString('hex')
  const known = drivePeers.get(key)
  if (!known || --known.channels > 0) return
  drivePeers.delete(key)
  if (closing) return // our own close: not news
  const then = drivePeers.size === 0 ? `; ${alone}` : ''
  console.log(`* peer ${known.id} ${short(peer.remotePublicKey)} left (${connected(drivePeers.size)})${then}`)
})

// A peersockets topic is a hypercore extension named 'peersockets/<topic>' on the drive's core.
const ext = drive.core.registerExtension('peersockets/' + args.topic, {
  encoding: 'binary',
  onmessage(buf, peer) {
    const known = drivePeers.get(peer.remotePublicKey.toString('hex'))
    if (!known) return
    console.log(`[peer ${known.id} ${short(peer.remotePublicKey)}] ${printable(buf.toString('utf-8'))}`)
  }
})

console.log(`drive key:  ${drive.key.toString('hex')}  (z32 ${idEncoding.encode(drive.key)})`)
console.log(`public key: ${keyPair.publicKey.toString('hex')}`)

const sockets = new Set()
function replicate(socket, isInitiator) {
  sockets.add(socket)
  socket.on('error', () => {}) // a reset connection only ends that peer (peer-remove)
  socket.on('close', () => sockets.delete(socket))
  // Replication over a plain TCP socket: the stream does the Noise handshake itself.
  const stream = store.replicate(isInitiator, { keyPair })
  stream.pipe(socket).pipe(stream)
  stream.on('error', () => {}) // as the socket's: the peer's leave (if it had joined) says it
}

let server = null
if (args.listen) {
  const { host, port } = hostPort(args.listen, '--listen')
  server = net.createServer((socket) => replicate(socket, false))
  server.on('error', (err) => die(`cannot listen on ${host}:${port}: ${reason(err)}`))
  await new Promise((resolve) => server.listen(port, host, resolve))
  console.log(`listening:  ${host}:${server.address().port}`)
}
for (const address of args.connect) {
  const { host, port } = hostPort(address, '--connect')
  const socket = net.connect({ host, port })
  let up = false
  socket.on('error', (err) => {
    if (!up) die(`cannot connect to ${host}:${port}: ${reason(err)}`)
  })
  socket.once('connect', () => {
    up = true
    console.log(`connected:  ${host}:${port}`)
  })
  replicate(socket, true)
}

// The DHT mode: hyperswarm finds the drive's peers by its discovery key (announce + look up).
let swarm = null
if (dhtMode) {
  let Hyperswarm
  try {
    Hyperswarm = require('hyperswarm')
  } catch {
    die('the DHT mode needs the npm package hyperswarm: npm ci --prefix tests/interop/js')
  }
  // hyperswarm's connections are secret streams already (the Noise handshake ran through the DHT)
  swarm = new Hyperswarm({ keyPair, bootstrap: bootstrap.length ? bootstrap : undefined })
  // While alone, look up (and announce) again now and then: two chats that join at the same
  // moment can each miss the other's announcement, and hyperswarm itself looks again only
  // every 10 minutes. Not sooner than 30 s: a dial of ours while hyperswarm is still sorting
  // out a first connection (see above: up to ~15 s on a tiny network) only gets in its way.
  const FIRST_DELAY = 30000
  let again = null
  let delay = FIRST_DELAY
  const say = (text) => console.log(`dht:        ${text}`)
  swarm.on('connection', (socket, info) => {
    const remote = short(socket.remotePublicKey)
    say(`connected to ${remote} (${info.client ? 'we found it' : 'it found us'}; ${connected(swarm.connections.size)})`)
    delay = FIRST_DELAY
    socket.on('error', () => {}) // a reset connection only ends that peer (peer-remove)
    socket.on('close', () => {
      if (closing) return
      const n = swarm.connections.size
      say(`connection to ${remote} closed (${connected(n)})`)
      if (n === 0) lookAgainLater()
    })
    store.replicate(socket)
  })
  const where = bootstrap.length ? `the DHT (bootstrap ${bootstrap.map((b) => `${b.host}:${b.port}`).join(', ')})` : 'the public DHT'
  say(`looking up the drive on ${where}... (topic: its discovery key ${short(drive.discoveryKey)})`)
  const discovery = swarm.join(drive.discoveryKey, { server: true, client: true })
  function lookAgainLater() {
    if (again || closing) return
    again = setTimeout(async () => {
      again = null
      if (closing || swarm.connections.size > 0) return
      await discovery.refresh().catch(() => {})
      delay = Math.min(delay * 2, 600000)
      lookAgainLater()
    }, delay)
    again.unref()
  }
  discovery
    .flushed()
    .then(() => {
      if (!closing) say('announced: others can find us now')
      return swarm.flush() // and every peer the lookup found has been dialled
    })
    .then(() => {
      if (closing) return
      const n = swarm.connections.size
      if (n > 0) return
      say('nobody has joined this drive yet; waiting for peers (they will find us)')
      lookAgainLater()
    })
    .catch((err) => say(`error: ${err.message}`))
}

async function shutdown() {
  if (closing) return
  closing = true
  setTimeout(() => process.exit(0), 3000).unref() // never hang on the way out
  if (server) server.close()
  if (swarm) await swarm.destroy().catch(() => {})
  await drive.close()
  await store.close()
  for (const socket of sockets) socket.destroy()
  if (temporary) fs.rmSync(storage, { recursive: true, force: true })
  process.exit(0)
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', (line) => {
  if (!line.trim()) return
  if (drivePeers.size === 0) console.error('(nobody has joined the drive yet: the message was not sent)')
  else ext.broadcast(Buffer.from(line, 'utf-8'))
})
lines.on('close', shutdown) // end of input (Ctrl-D)
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)
