// A controllable udx-native peer: one UDX instance, one socket, many streams.
//
//   node udx_peer.mjs [--host 127.0.0.1|::1] [--port N]
//
// The socket is bound to --host (default 127.0.0.1), port --port (default 0).
// Streams are created, driven and inspected by JSON-line commands; every stream
// is keyed by its local id (the id the peer's packets carry), so any number of
// them can run at once.
//
// Events (stdout, one JSON object per line):
//   {"event":"listening","port":N,"host":H,"family":4|6}
//   {"event":"stream-created","local_id":N,"remote_id":N,"mode":M,"firewall":bool}
//       always before that stream's stream-connected
//   {"event":"stream-connected","local_id":N,"remote_id":N,"port":P,"host":H,"firewall":bool}
//       on connect; with a firewall, when the first packet arrived (P/H = its source)
//   {"event":"sent","local_id":N,"size":N,"seed":K}     a write was queued (source mode or "write")
//   {"event":"stream-finish","local_id":N}              our END was handed to udx (streamx 'finish')
//   {"event":"stream-end","local_id":N,"length":N,"sha256":hex}
//       the remote ended its side; length/sha256 cover every byte read on the stream
//   {"event":"stream-error","local_id":N,"code":str,"message":str}   e.g. ECONNRESET, ETIMEDOUT
//   {"event":"stream-close","local_id":N,"length":N,"sha256":hex,"ended":bool}
//       ended: whether the remote's END had been read before the close
//   {"event":"message","local_id":N,"length":N,"hex":hex,"sha256":hex}
//       a MESSAGE datagram for the stream; hex = its first 64 bytes
//   {"event":"message-sent","local_id":N,"length":N,"ok":bool}
//   {"event":"socket-message","length":N,"hex":hex,"sha256":hex,"port":P,"host":H}
//       a datagram udx did not claim (not UDX, or for no live stream); hex = first 64 bytes
//   {"event":"socket-sent","length":N,"ok":bool}
//   {"event":"stats","local_id":N,...}                  see the stats command
//   {"event":"cmd-error","cmd":str,"message":str}       a bad command; the peer carries on
//   {"event":"error","message":str}                     fatal; exit code 1
//
// Commands (stdin):
//   {"cmd":"stream","local_id":N,"remote_id":N,"port":P,"host":H,"mode":M,
//    "size":N,"seed":K,"end":bool,"keepalive":MS,"firewall":bool}
//       mode "sink" (default): read and hash; on the remote's END emit stream-end,
//         then end our side unless "end":false.
//       mode "echo": write back everything read; on the remote's END emit
//         stream-end, then end our side unless "end":false.
//       mode "source": write pattern(size, seed), then end unless "end":false;
//         emit sent; also read and hash what comes back (stream-end on its END;
//         our side is already ended).
//       mode "idle": read and hash only; never ends by itself unless "end":true.
//       firewall false (default): connect at once to (remote_id, port, host);
//         host defaults to --host. firewall true: created unconnected; the first
//         packet for local_id connects it to (remote_id, that packet's source
//         port and host) and is then processed (the firewall returns false, as
//         in hyperdht). port/host are ignored.
//       keepalive: stream.setKeepalive(ms) (HEARTBEAT while idle), default off.
//   {"cmd":"write","local_id":N,"size":N,"seed":K}      write pattern(size, seed)
//   {"cmd":"end","local_id":N}                          end our side (END)
//   {"cmd":"destroy","local_id":N}                      stream.destroy() (DESTROY if connected)
//   {"cmd":"keepalive","local_id":N,"ms":MS}            stream.setKeepalive(ms)
//   {"cmd":"send_message","local_id":N,"hex":hex}       stream.send(): one unreliable MESSAGE
//   {"cmd":"stats","local_id":N}  -> {"event":"stats","local_id":N,"connected":bool,
//       "closed":bool,"remote_id":N,"remote_port":P,"remote_host":H,"mtu":N,
//       "rtt":srtt_ms,"cwnd":packets,"inflight":bytes,"rto":null,"rto_count":N,
//       "retransmits":N,"fast_recoveries":N,"bbr_state":N,"bbr_bandwidth":N,
//       "bytes_tx":N,"packets_tx":N,"bytes_rx":N,"packets_rx":N,
//       "received":N (bytes read by this script),
//       "socket_packets_rx":N,"socket_packets_tx":N,"packets_dropped_by_kernel":N|null}
//       udx-native 1.21.3 does not expose the RTO itself: "rto" is always null.
//       "retransmits" and "fast_recoveries" are 16-bit counters in libudx (they wrap);
//       packets_dropped_by_kernel is null when the OS does not report it.
//       Stats of a closed stream stay available until its id is reused (udx-native
//       drops the socket on close, so "connected" is false then).
//   {"cmd":"socket_send","port":P,"host":H,"hex":hex}   socket.send(): one raw datagram
//   {"cmd":"exit"}                                      destroy every stream, exit 0

import {
  require,
  emit,
  log,
  installCrashHandlers,
  exitNow,
  pattern,
  parseArgs,
  commands,
  commandError,
  fromHex,
  seedOf
} from './_common.mjs'
import { createHash } from 'node:crypto'

const UDX = require('udx-native')

const MODES = new Set(['sink', 'echo', 'source', 'idle'])
const HEX_PREVIEW = 64

installCrashHandlers()

const args = parseArgs({ host: 'string', port: 'string' })
const HOST = args.host || '127.0.0.1'
if (!UDX.isIP(HOST)) throw new Error(`--host: not an IP address: ${HOST}`)
const PORT = args.port === null ? 0 : checkPort(Number(args.port), '--port', true)

const udx = new UDX()
const socket = udx.createSocket()
socket.bind(PORT, HOST)
socket.on('message', (buf, rinfo) => {
  emit({ event: 'socket-message', length: buf.byteLength, ...preview(buf), port: rinfo.port, host: rinfo.host })
})

// local_id -> per-stream state
const streams = new Map()

function preview(buf) {
  return {
    hex: Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.byteLength, HEX_PREVIEW)).toString('hex'),
    sha256: createHash('sha256').update(buf).digest('hex')
  }
}

function checkPort(port, what, zeroOk = false) {
  if (!Number.isInteger(port) || port < (zeroOk ? 0 : 1) || port > 65535) {
    const err = new Error(`${what}: bad port ${JSON.stringify(port)}`)
    if (what !== '--port') err.isCommandError = true
    throw err
  }
  return port
}

function checkId(value, what) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw commandError(`${what}: expected a 32-bit unsigned integer, got ${JSON.stringify(value)}`)
  }
  return value
}

function checkSize(value) {
  if (!Number.isInteger(value) || value < 0) throw commandError(`bad size ${JSON.stringify(value)}`)
  return value
}

function checkHost(value) {
  const host = value === undefined || value === null ? HOST : value
  if (typeof host !== 'string' || !UDX.isIP(host)) throw commandError(`bad host ${JSON.stringify(value)}`)
  return host
}

function getStream(cmd) {
  const id = checkId(cmd.local_id, 'local_id')
  const st = streams.get(id)
  if (!st) throw commandError(`no stream with local_id ${id}`)
  return st
}

function liveStream(cmd) {
  const st = getStream(cmd)
  if (st.closed || st.stream.destroying) throw commandError(`stream ${st.id} is closed`)
  return st
}

function connectedStream(cmd) {
  const st = liveStream(cmd)
  if (!st.stream.connected) throw commandError(`stream ${st.id} is not connected yet`)
  return st
}

function createStream(cmd) {
  const id = checkId(cmd.local_id, 'local_id')
  const remoteId = checkId(cmd.remote_id, 'remote_id')
  const mode = cmd.mode === undefined ? 'sink' : cmd.mode
  if (!MODES.has(mode)) throw commandError(`bad mode ${JSON.stringify(mode)}`)
  const firewall = cmd.firewall === true
  const autoEnd = cmd.end === undefined ? mode !== 'idle' : cmd.end === true
  const size = mode === 'source' ? checkSize(cmd.size === undefined ? 0 : cmd.size) : 0
  const seed = seedOf(cmd)
  const keepalive = cmd.keepalive === undefined ? 0 : cmd.keepalive
  if (!Number.isInteger(keepalive) || keepalive < 0) throw commandError(`bad keepalive ${JSON.stringify(keepalive)}`)
  let port = 0
  let host = HOST
  if (!firewall) {
    port = checkPort(cmd.port, 'port')
    host = checkHost(cmd.host)
  }
  const previous = streams.get(id)
  if (previous && !previous.closed) throw commandError(`local_id ${id} is in use`)

  const st = {
    id,
    remoteId,
    mode,
    autoEnd,
    stream: null,
    hash: createHash('sha256'),
    received: 0,
    ended: false,
    closed: false
  }

  const opts = {}
  if (firewall) {
    opts.firewall = (sock, fromPort, fromHost) => {
      // hyperdht style: adopt the first packet's source and let it through
      st.stream.connect(sock, remoteId, fromPort, fromHost)
      return false
    }
  }

  let stream
  try {
    stream = udx.createStream(id, opts)
  } catch (err) {
    throw commandError(`createStream(${id}): ${err.message}`)
  }
  st.stream = stream
  streams.set(id, st)

  stream.on('connect', () => {
    emit({
      event: 'stream-connected',
      local_id: id,
      remote_id: remoteId,
      port: stream.remotePort,
      host: stream.remoteHost,
      firewall
    })
    // never write from inside udx's firewall callback: start on the next turn
    if (mode === 'source') setImmediate(() => startSource(st, size, seed))
  })
  stream.on('data', (data) => {
    st.received += data.byteLength
    st.hash.update(data)
    if (mode === 'echo') stream.write(Buffer.from(data))
  })
  stream.on('end', () => {
    st.ended = true
    emit({ event: 'stream-end', local_id: id, length: st.received, sha256: st.hash.copy().digest('hex') })
    if (st.autoEnd && mode !== 'source') stream.end()
  })
  stream.on('finish', () => emit({ event: 'stream-finish', local_id: id }))
  stream.on('message', (buf) => {
    emit({ event: 'message', local_id: id, length: buf.byteLength, ...preview(buf) })
  })
  stream.on('error', (err) => {
    emit({ event: 'stream-error', local_id: id, code: err.code || null, message: err.message })
  })
  stream.on('close', () => {
    st.closed = true
    emit({
      event: 'stream-close',
      local_id: id,
      length: st.received,
      sha256: st.hash.copy().digest('hex'),
      ended: st.ended
    })
  })

  if (keepalive > 0) stream.setKeepalive(keepalive)

  emit({ event: 'stream-created', local_id: id, remote_id: remoteId, mode, firewall })
  if (!firewall) {
    try {
      stream.connect(socket, remoteId, port, host)
    } catch (err) {
      stream.destroy()
      throw commandError(`connect(${id}): ${err.message}`)
    }
  }
}

function startSource(st, size, seed) {
  if (st.closed || st.stream.destroying) return
  st.stream.write(pattern(size, seed))
  emit({ event: 'sent', local_id: st.id, size, seed })
  if (st.autoEnd) st.stream.end()
}

// libudx reports "unknown" as all ones (2^64 - 1): null then
function counter(value) {
  return Number.isSafeInteger(value) ? value : null
}

function stats(st) {
  const s = st.stream
  return {
    event: 'stats',
    local_id: st.id,
    connected: s.connected,
    closed: st.closed,
    remote_id: s.remoteId,
    remote_port: s.remotePort,
    remote_host: s.remoteHost,
    mtu: s.mtu,
    rtt: s.rtt,
    cwnd: s.cwnd,
    inflight: s.inflight,
    rto: null,
    rto_count: s.rtoCount,
    retransmits: s.retransmits,
    fast_recoveries: s.fastRecoveries,
    bbr_state: s.bbrState,
    bbr_bandwidth: s.bbrBandwidth,
    bytes_tx: s.bytesTransmitted,
    packets_tx: s.packetsTransmitted,
    bytes_rx: s.bytesReceived,
    packets_rx: s.packetsReceived,
    received: st.received,
    socket_packets_rx: socket.packetsReceived,
    socket_packets_tx: socket.packetsTransmitted,
    packets_dropped_by_kernel: counter(socket.packetsDroppedByKernel)
  }
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'stream':
      createStream(cmd)
      return
    case 'write': {
      const st = connectedStream(cmd)
      const size = checkSize(cmd.size)
      const seed = seedOf(cmd)
      st.stream.write(pattern(size, seed))
      emit({ event: 'sent', local_id: st.id, size, seed })
      return
    }
    case 'end':
      connectedStream(cmd).stream.end()
      return
    case 'destroy':
      liveStream(cmd).stream.destroy()
      return
    case 'keepalive': {
      const st = liveStream(cmd)
      if (!Number.isInteger(cmd.ms) || cmd.ms < 0) throw commandError(`bad ms ${JSON.stringify(cmd.ms)}`)
      st.stream.setKeepalive(cmd.ms)
      return
    }
    case 'send_message': {
      const st = connectedStream(cmd)
      const buf = fromHexCmd(cmd.hex)
      const ok = await st.stream.send(buf)
      emit({ event: 'message-sent', local_id: st.id, length: buf.byteLength, ok })
      return
    }
    case 'stats':
      emit(stats(getStream(cmd)))
      return
    case 'socket_send': {
      const port = checkPort(cmd.port, 'port')
      const host = checkHost(cmd.host)
      const buf = fromHexCmd(cmd.hex)
      const ok = await socket.send(buf, port, host)
      emit({ event: 'socket-sent', length: buf.byteLength, ok })
      return
    }
    case 'exit':
      shutdown()
      return
    default:
      throw commandError(`unknown command ${cmd.cmd}`)
  }
}

function fromHexCmd(value) {
  try {
    return fromHex(value, 'hex')
  } catch (err) {
    throw commandError(err.message)
  }
}

function shutdown() {
  for (const st of streams.values()) {
    if (!st.closed) st.stream.destroy()
  }
  exitNow(0)
}

commands(handle, shutdown)
process.on('SIGTERM', shutdown)

const address = socket.address()
log(`bound ${address.host} port ${address.port}`)
emit({ event: 'listening', port: address.port, host: address.host, family: address.family })
