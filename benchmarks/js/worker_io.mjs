// What the JavaScript benchmark workers share: their side of the runner's JSON-lines
// protocol. benchmarks/js/worker.mjs (hyperdrive over TCP) and benchmarks/js/udx_worker.mjs
// (udx-native) differ in their commands only; this module holds the plumbing around them
// (benchmarks/worker_io.py is the Python workers' counterpart):
//
//   emit(event)            one event line on stdout (BigInts as decimal strings)
//   log(...args)           a line on stderr, with the worker's prefix
//   fail(err)              a fatal error: {"event":"error","message":str}, then exit 1
//   isExiting()            whether the worker is shutting down (or failed)
//   installFatalHandlers(prefix)
//                          uncaught errors and rejections are fatal; a closed stdout exits 0
//   serve({ started, handlers, close, forceExitMs })
//                          the command loop: the "started" event, then the commands from
//                          stdin, one at a time, in order; "exit", the end of stdin or
//                          SIGTERM shut the worker down (close(), then exit 0)

import readline from 'node:readline'

export const now = () => process.hrtime.bigint()

let logPrefix = '[js worker]'
let exiting = false

export function emit(obj) {
  process.stdout.write(JSON.stringify(obj, (k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n')
}

export function log(...args) {
  console.error(logPrefix, ...args)
}

export function isExiting() {
  return exiting
}

export function fail(err) {
  if (exiting) return
  exiting = true
  log('fatal:', err && err.stack ? err.stack : String(err))
  emit({ event: 'error', message: err && err.message ? err.message : String(err) })
  process.exit(1)
}

// Call first: from then on an uncaught error is reported as an "error" event.
export function installFatalHandlers(prefix) {
  logPrefix = prefix
  process.on('uncaughtException', fail)
  process.on('unhandledRejection', fail)
  process.stdout.on('error', () => process.exit(0))
}

// started: extra fields of the "started" event; handlers: { name: async (cmd) => ... };
// close: releases the worker's resources at shutdown (its errors are logged); forceExitMs:
// how long close() may take before the process exits anyway.
export function serve({ started = {}, handlers, close, forceExitMs }) {
  async function shutdown() {
    if (exiting) return
    exiting = true
    const force = setTimeout(() => process.exit(0), forceExitMs)
    try {
      await close()
    } catch (err) {
      log('error while closing:', err.message)
    }
    clearTimeout(force)
    process.exit(0)
  }

  async function dispatch(cmd) {
    if (cmd.cmd === 'exit') return shutdown()
    if (!Object.hasOwn(handlers, cmd.cmd)) throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`)
    return handlers[cmd.cmd](cmd)
  }

  emit({ event: 'started', stack: 'js', node: process.version, ...started, clock_ns: now(), pid: process.pid })

  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  let chain = Promise.resolve()
  rl.on('line', (line) => {
    if (!line.trim()) return
    const cmd = JSON.parse(line)
    chain = chain.then(() => dispatch(cmd)).catch(fail)
  })
  rl.on('close', () => {
    chain = chain.then(() => shutdown())
  })
  process.on('SIGTERM', () => shutdown())
}
