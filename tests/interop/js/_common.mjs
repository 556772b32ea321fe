// Shared plumbing for the interop peer scripts: JSON-line events on stdout,
// JSON-line commands on stdin, argument parsing, loopback TCP, payload pattern.
//
// stdout carries only events (one JSON object per line); logs go to stderr.

import { createRequire } from 'node:module'
import { createHash } from 'node:crypto'
import net from 'node:net'
import readline from 'node:readline'

export const require = createRequire(import.meta.url)

const HOST = '127.0.0.1'

export function emit(obj) {
  // stdout is a pipe when driven by the tests; on Linux pipe writes are
  // synchronous, so every line is flushed before we continue (or exit).
  process.stdout.write(JSON.stringify(obj) + '\n')
}

export function log(...args) {
  console.error(`[${process.argv[1].split('/').pop()}]`, ...args)
}

let exiting = false

export function fail(err) {
  if (exiting) return
  exiting = true
  const message = err && err.stack ? err.stack : String(err)
  log('fatal:', message)
  emit({ event: 'error', message: err && err.message ? err.message : String(err) })
  process.exit(1)
}

export function exitNow(code = 0) {
  if (exiting) return
  exiting = true
  process.exit(code)
}

export function installCrashHandlers() {
  process.on('uncaughtException', fail)
  process.on('unhandledRejection', fail)
  // a closed stdout (reader went away) is not worth a crash report
  process.stdout.on('error', () => exitNow(0))
}

// pattern(size, seed): byte i = (seed + i) % 251
export function pattern(size, seed = 0) {
  const buf = Buffer.allocUnsafe(size)
  if (size === 0) return buf
  const period = Math.min(size, 251)
  const s = ((seed % 251) + 251) % 251
  for (let i = 0; i < period; i++) buf[i] = (s + i) % 251
  // the sequence repeats every 251 bytes: double the filled prefix
  let filled = period
  while (filled < size) {
    const n = Math.min(filled, size - filled)
    buf.copy(buf, filled, 0, n)
    filled += n
  }
  return buf
}

export function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex')
}

export function hex(buf) {
  return buf ? Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex') : null
}

export function fromHex(s, what, length = -1) {
  if (typeof s !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(s)) throw new Error(`${what}: expected hex, got ${JSON.stringify(s)}`)
  const buf = Buffer.from(s, 'hex')
  if (length >= 0 && buf.byteLength !== length) throw new Error(`${what}: expected ${length} bytes, got ${buf.byteLength}`)
  return buf
}

// Minimal argv parser. spec: { name: 'flag' | 'string' | 'list' }.
export function parseArgs(spec, argv = process.argv.slice(2)) {
  const out = {}
  for (const [name, kind] of Object.entries(spec)) out[name] = kind === 'flag' ? false : kind === 'list' ? [] : null
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`)
    let name = arg.slice(2)
    let value = null
    const eq = name.indexOf('=')
    if (eq !== -1) {
      value = name.slice(eq + 1)
      name = name.slice(0, eq)
    }
    const kind = spec[name]
    if (!kind) throw new Error(`unknown option --${name}`)
    if (kind === 'flag') {
      out[name] = true
      continue
    }
    if (value === null) {
      if (i + 1 >= argv.length) throw new Error(`--${name} needs a value`)
      value = argv[++i]
    }
    if (kind === 'list') out[name].push(value)
    else out[name] = value
  }
  return out
}

export function checkRole(args) {
  if (!!args.listen === (args.connect !== null)) throw new Error('give exactly one of --listen or --connect PORT')
  if (args.connect !== null) {
    const port = Number(args.connect)
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad port ${args.connect}`)
    args.connect = port
  }
  if (args.seed !== null) args.seed = fromHex(args.seed, '--seed', 32)
}

// Listen on 127.0.0.1, port 0; prints {"event":"listening","port":N}.
export function listen(onconnection) {
  const server = net.createServer({ noDelay: true }, onconnection)
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, HOST, () => {
      server.removeListener('error', reject)
      server.on('error', fail)
      emit({ event: 'listening', port: server.address().port })
      resolve(server)
    })
  })
}

export function connect(port) {
  const socket = net.connect({ port, host: HOST, noDelay: true })
  return socket
}

// Read JSON-line commands from stdin and run them one at a time, in order.
// onend runs when stdin closes (treated like {"cmd":"exit"}).
export function commands(handler, onend) {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  let chain = Promise.resolve()
  rl.on('line', (line) => {
    if (!line.trim()) return
    let cmd
    try {
      cmd = JSON.parse(line)
    } catch {
      chain = chain.then(() => emit({ event: 'cmd-error', message: `not JSON: ${line}` }))
      return
    }
    chain = chain.then(() => runOne(handler, cmd))
  })
  rl.on('close', () => {
    chain = chain.then(() => onend())
  })
}

async function runOne(handler, cmd) {
  if (!cmd || typeof cmd.cmd !== 'string') {
    emit({ event: 'cmd-error', message: 'command object needs a "cmd" field' })
    return
  }
  try {
    await handler(cmd)
  } catch (err) {
    if (err && err.isCommandError) {
      emit({ event: 'cmd-error', cmd: cmd.cmd, message: err.message })
      return
    }
    throw err
  }
}

export function commandError(message) {
  const err = new Error(message)
  err.isCommandError = true
  return err
}

// sizes of a send command: "size" (number) or "sizes" (list)
export function sizesOf(cmd) {
  if (Array.isArray(cmd.sizes)) return cmd.sizes.map((s) => checkSize(s))
  const count = cmd.count === undefined ? 1 : cmd.count
  if (!Number.isInteger(count) || count < 0) throw commandError(`bad count ${count}`)
  const size = checkSize(cmd.size)
  return new Array(count).fill(size)
}

function checkSize(s) {
  if (!Number.isInteger(s) || s < 0) throw commandError(`bad size ${JSON.stringify(s)}`)
  return s
}

export function seedOf(cmd) {
  const seed = cmd.seed === undefined ? 0 : cmd.seed
  if (!Number.isInteger(seed) || seed < 0) throw commandError(`bad seed ${JSON.stringify(seed)}`)
  return seed
}

// One connection, as the initiator (--connect PORT) or the responder (--listen,
// a second connection refused), then JSON-line commands until exit or stdin end.
// currentStream() returns the live stream (or null); attach(socket, isInitiator)
// sets it up. Returns shutdown(), which destroys the stream and exits 0.
export async function runSingleConnection(args, { attach, handle, currentStream }) {
  let server = null
  const shutdown = () => {
    const stream = currentStream()
    if (stream) stream.destroy()
    if (server) server.close()
    exitNow(0)
  }
  if (args.listen) {
    server = await listen((socket) => {
      if (currentStream() !== null) {
        log('refusing a second connection')
        socket.destroy()
        return
      }
      server.close()
      attach(socket, false)
    })
  } else {
    attach(connect(args.connect), true)
  }
  commands(handle, shutdown)
  process.on('SIGTERM', shutdown)
  return shutdown
}
