// A Protomux peer on a @hyperswarm/secret-stream over one loopback TCP connection.
//
//   node protomux_peer.mjs (--listen | --connect PORT) [--seed HEX32] [--accept PROTOCOL]... [--keepalive MS]
//                          [--accept-delay MS]
//
// Every channel uses handshake encoding c.raw and messages
// [ {encoding: c.buffer}, {encoding: c.string} ].
// --accept PROTOCOL: when the remote opens PROTOCOL (any id), open a matching
// channel (mux.pair + open with an empty handshake). Other protocols are not
// paired, so protomux rejects them.
// --accept-delay MS: the --accept pair handler waits MS before creating and opening
// the channel (protomux awaits it), so an incoming open stays unpaired that long.
//
// Events (stdout, one JSON object per line):
//   {"event":"listening","port":N}
//   {"event":"handshake","handshake_hash":hex64,"remote_public_key":hex32,"public_key":hex32,"initiator":bool}
//   {"event":"open","protocol":str,"id":hex|null,"handshake":hex}        channel fully open; handshake = remote's
//   {"event":"message","protocol":str,"id":hex|null,"type":0,"data":hex}
//   {"event":"message","protocol":str,"id":hex|null,"type":1,"text":str}
//   {"event":"close","protocol":str,"id":hex|null,"opened":bool,"remote":bool}
//        opened false = the channel never opened (rejected, or closed before the remote opened it);
//        remote true = closed by the remote (close/reject frame or the stream going away)
//   {"event":"sent","protocol":str,"id":hex|null,"count":N}             after send / batch
//   {"event":"end"}  {"event":"stream-error","message":str}  {"event":"stream-close"}
//   {"event":"cmd-error","cmd":str,"message":str}
//   {"event":"error","message":str}                                     fatal; exit code 1
// Commands (stdin):
//   {"cmd":"open","protocol":str,"id":hex|null,"handshake":hex}
//   {"cmd":"send","protocol":str,"id":hex|null,"type":0,"data":hex} / {"type":1,"text":str}
//   {"cmd":"batch","protocol":str,"id":hex|null,"items":[{"type":0,"data":hex}|{"type":1,"text":str},...]}
//   {"cmd":"close","protocol":str,"id":hex|null}
//   {"cmd":"end"}  {"cmd":"destroy"}  {"cmd":"exit"}

import {
  require,
  emit,
  log,
  installCrashHandlers,
  hex,
  fromHex,
  parseArgs,
  checkRole,
  commandError,
  runSingleConnection
} from './_common.mjs'

const NoiseSecretStream = require('@hyperswarm/secret-stream')
const Protomux = require('protomux')
const c = require('compact-encoding')

installCrashHandlers()

const args = parseArgs({
  listen: 'flag',
  connect: 'string',
  seed: 'string',
  accept: 'list',
  keepalive: 'string',
  'accept-delay': 'string'
})
checkRole(args)

const keyPair = NoiseSecretStream.keyPair(args.seed || undefined)
const acceptDelay = Number(args['accept-delay'] || 0)
let stream = null
let mux = null
// "protocol##idhex" -> channel (the live one we created)
const channels = new Map()

const keyOf = (protocol, id) => protocol + '##' + (id ? hex(id) : '')

function makeChannel(protocol, id) {
  const idHex = id ? hex(id) : null
  const channel = mux.createChannel({
    protocol,
    id,
    handshake: c.raw,
    messages: [
      {
        encoding: c.buffer,
        onmessage: (data) => emit({ event: 'message', protocol, id: idHex, type: 0, data: hex(data) })
      },
      {
        encoding: c.string,
        onmessage: (text) => emit({ event: 'message', protocol, id: idHex, type: 1, text })
      }
    ],
    onopen: (handshake) => emit({ event: 'open', protocol, id: idHex, handshake: hex(handshake) || '' }),
    onclose: (isRemote, ch) => {
      const key = keyOf(protocol, id)
      if (channels.get(key) === ch) channels.delete(key)
      emit({ event: 'close', protocol, id: idHex, opened: ch.opened, remote: isRemote })
    }
  })
  if (channel !== null) channels.set(keyOf(protocol, id), channel)
  return channel
}

function attach(socket, isInitiator) {
  socket.on('error', (err) => log('socket error:', err.message))

  stream = new NoiseSecretStream(isInitiator, socket, { keyPair })
  if (args.keepalive) stream.setKeepAlive(Number(args.keepalive))
  mux = new Protomux(stream)

  for (const protocol of args.accept) {
    mux.pair({ protocol }, async (id) => {
      if (acceptDelay > 0) await new Promise((resolve) => setTimeout(resolve, acceptDelay))
      const channel = makeChannel(protocol, id)
      if (channel === null) log(`could not accept ${protocol} ${id ? hex(id) : ''}`)
      else channel.open(Buffer.alloc(0))
    })
  }

  stream.on('connect', () => {
    emit({
      event: 'handshake',
      handshake_hash: hex(stream.handshakeHash),
      remote_public_key: hex(stream.remotePublicKey),
      public_key: hex(stream.publicKey),
      initiator: stream.isInitiator
    })
  })
  stream.on('end', () => emit({ event: 'end' }))
  stream.on('error', (err) => emit({ event: 'stream-error', message: err.message }))
  stream.on('close', () => emit({ event: 'stream-close' }))
}

function needMux() {
  if (mux === null) throw commandError('no connection yet')
  if (stream.destroying) throw commandError('stream is closed')
}

function target(cmd) {
  if (typeof cmd.protocol !== 'string') throw commandError('"protocol" must be a string')
  const id = cmd.id === undefined || cmd.id === null ? null : fromHex(cmd.id, 'id')
  return { protocol: cmd.protocol, id }
}

function channelFor(cmd) {
  const { protocol, id } = target(cmd)
  const channel = channels.get(keyOf(protocol, id))
  if (!channel) throw commandError(`no channel ${protocol} ${id ? hex(id) : 'null'}`)
  return channel
}

function sendItem(channel, item) {
  if (item.type === 0) {
    channel.messages[0].send(fromHex(item.data === undefined ? '' : item.data, 'data'))
  } else if (item.type === 1) {
    if (typeof item.text !== 'string') throw commandError('type 1 needs "text"')
    channel.messages[1].send(item.text)
  } else {
    throw commandError(`type must be 0 or 1, got ${JSON.stringify(item.type)}`)
  }
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'open': {
      needMux()
      const { protocol, id } = target(cmd)
      const handshake = fromHex(cmd.handshake === undefined ? '' : cmd.handshake, 'handshake')
      const channel = makeChannel(protocol, id)
      if (channel === null) throw commandError(`channel ${protocol} ${id ? hex(id) : 'null'} is already open`)
      channel.open(handshake)
      return
    }
    case 'send': {
      needMux()
      const channel = channelFor(cmd)
      sendItem(channel, cmd)
      emit({ event: 'sent', protocol: channel.protocol, id: channel.id ? hex(channel.id) : null, count: 1 })
      return
    }
    case 'batch': {
      needMux()
      const channel = channelFor(cmd)
      if (!Array.isArray(cmd.items)) throw commandError('"items" must be a list')
      for (const item of cmd.items) if (item.type !== 0 && item.type !== 1) throw commandError('bad item type')
      mux.cork()
      try {
        for (const item of cmd.items) sendItem(channel, item)
      } finally {
        mux.uncork()
      }
      emit({ event: 'sent', protocol: channel.protocol, id: channel.id ? hex(channel.id) : null, count: cmd.items.length })
      return
    }
    case 'close': {
      needMux()
      channelFor(cmd).close()
      return
    }
    case 'end':
      needMux()
      stream.end()
      return
    case 'destroy':
      needMux()
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
