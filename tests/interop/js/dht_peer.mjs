// A hyperdht 6 testnet, or a hyperdht client node driven by JSON-line commands,
// for the Python DHT's interop tests. Everything runs on 127.0.0.1.
//
//   node dht_peer.mjs --testnet N
//   node dht_peer.mjs --bootstrap HOST:PORT [--bootstrap HOST:PORT]...
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
//
// Events (stdout, one JSON object per line):
//   {"event":"testnet","bootstrap":[{"host":H,"port":P}],"nodes":[{"host":H,"port":P}]}
//       --testnet: every node fully bootstrapped; bootstrap is the first node
//   {"event":"ready","host":H,"port":P,"ephemeral":bool}
//       --bootstrap: the client bootstrapped (host/port: the socket it sends from)
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
//   {"cmd":"exit"}                                    destroy the node(s), exit 0 (also on stdin end or SIGTERM)

import {
  require,
  emit,
  log,
  installCrashHandlers,
  exitNow,
  parseArgs,
  commands,
  commandError,
  fromHex
} from './_common.mjs'

const HyperDHT = require('hyperdht')

const HOST = '127.0.0.1'
// dht-rpc's port scan over [start, end): empty, so it binds port 0 (see above)
const ANY_PORT = [0, 0]

installCrashHandlers()

const args = parseArgs({ testnet: 'string', bootstrap: 'list' })
if ((args.testnet !== null) === (args.bootstrap.length > 0)) {
  throw new Error('give exactly one of --testnet N or --bootstrap HOST:PORT')
}

// every HyperDHT this process made, destroyed on exit (last made first)
const nodes = []
let client = null
let shuttingDown = false

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
  client = new HyperDHT({ ephemeral: true, bootstrap, port: ANY_PORT, host: HOST })
  nodes.push(client)
  await client.fullyBootstrapped()
  const { host, port } = address(client)
  log(`client on ${host}:${port}, bootstrap ${bootstrap.map((b) => `${b.host}:${b.port}`).join(' ')}`)
  emit({ event: 'ready', host, port, ephemeral: client.ephemeral })
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
    default:
      throw commandError(`unknown command ${cmd.cmd}`)
  }
}

async function shutdown() {
  if (shuttingDown) return
  shuttingDown = true
  for (let i = nodes.length - 1; i >= 0; i--) {
    try {
      await nodes[i].destroy()
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
