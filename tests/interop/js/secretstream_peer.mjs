// A @hyperswarm/secret-stream peer on one loopback TCP connection.
//
//   node secretstream_peer.mjs (--listen | --connect PORT) [--seed HEX32] [--echo] [--keepalive MS]
//
// Initiator with --connect, responder with --listen (one connection accepted).
//
// Events (stdout, one JSON object per line):
//   {"event":"listening","port":N}
//   {"event":"handshake","handshake_hash":hex64,"remote_public_key":hex32,"public_key":hex32,"initiator":bool}
//   {"event":"message","length":N,"sha256":hex}
//   {"event":"sent","size":N,"seed":K,"tampered":bool}
//   {"event":"end"}                      remote ended its side gracefully
//   {"event":"stream-error","message":str}
//   {"event":"close"}
//   {"event":"cmd-error","cmd":str,"message":str}
//   {"event":"error","message":str}      fatal; exit code 1
// Commands (stdin):
//   {"cmd":"send","size":N,"seed":K}
//   {"cmd":"send_tampered","size":N,"seed":K}   one ciphertext byte flipped on the socket
//   {"cmd":"end"}  {"cmd":"destroy"}  {"cmd":"exit"}

import {
  require,
  emit,
  log,
  installCrashHandlers,
  pattern,
  sha256,
  hex,
  parseArgs,
  checkRole,
  commandError,
  seedOf,
  runSingleConnection
} from './_common.mjs'

const NoiseSecretStream = require('@hyperswarm/secret-stream')

const ABYTES = 17

installCrashHandlers()

const args = parseArgs({ listen: 'flag', connect: 'string', seed: 'string', echo: 'flag', keepalive: 'string' })
checkRole(args)

const keyPair = NoiseSecretStream.keyPair(args.seed || undefined)
let stream = null
let tamperNextLength = -1

function attach(socket, isInitiator) {
  socket.on('error', (err) => log('socket error:', err.message))

  // send_tampered: flip one ciphertext byte of the next frame of the expected
  // length on its way to the socket (secret-stream writes one frame per write).
  const write = socket.write
  socket.write = function (data, ...rest) {
    if (tamperNextLength >= 0 && data.byteLength === tamperNextLength) {
      // byte 3 is the first ciphertext byte (the encrypted tag), byte 4 the first message byte
      const at = data.byteLength > 3 + ABYTES ? 4 : 3
      data[at] ^= 0x01
      tamperNextLength = -1
    }
    return write.call(this, data, ...rest)
  }

  stream = new NoiseSecretStream(isInitiator, socket, { keyPair })
  if (args.keepalive) stream.setKeepAlive(Number(args.keepalive))

  stream.on('connect', () => {
    emit({
      event: 'handshake',
      handshake_hash: hex(stream.handshakeHash),
      remote_public_key: hex(stream.remotePublicKey),
      public_key: hex(stream.publicKey),
      initiator: stream.isInitiator
    })
  })
  stream.on('data', (data) => {
    emit({ event: 'message', length: data.byteLength, sha256: sha256(data) })
    if (args.echo) stream.write(Buffer.from(data))
  })
  stream.on('end', () => {
    emit({ event: 'end' })
    stream.end()
  })
  stream.on('error', (err) => emit({ event: 'stream-error', message: err.message }))
  stream.on('close', () => emit({ event: 'close' }))
}

function needStream() {
  if (stream === null) throw commandError('no connection yet')
  if (stream.destroying) throw commandError('stream is closed')
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'send':
    case 'send_tampered': {
      needStream()
      const size = cmd.size
      if (!Number.isInteger(size) || size < 0) throw commandError(`bad size ${JSON.stringify(size)}`)
      const seed = seedOf(cmd)
      const tampered = cmd.cmd === 'send_tampered'
      if (tampered) tamperNextLength = size + 3 + ABYTES
      stream.write(pattern(size, seed))
      emit({ event: 'sent', size, seed, tampered })
      return
    }
    case 'end':
      needStream()
      stream.end()
      return
    case 'destroy':
      needStream()
      stream.destroy()
      return
    case 'exit':
      shutdown()
      return
    default:
      throw commandError(`unknown command ${cmd.cmd}`)
  }
}

const shutdown = await runSingleConnection(args, { attach, handle, currentStream: () => stream })
