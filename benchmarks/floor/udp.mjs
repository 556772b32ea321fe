// Bare Node.js UDP ping-pong (node:dgram), the floor under the UDX round trip.
//   node udp.mjs echo              prints {"port": N}, echoes until killed
//   node udp.mjs ping ROUNDS PORT  prints p50/p99/mean in µs
import dgram from 'node:dgram'
import { printPercentiles } from './percentiles.mjs'

const [mode, rounds, port] = process.argv.slice(2)
const WARMUP = 500
const socket = dgram.createSocket('udp4')

if (mode === 'echo') {
  socket.on('message', (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address))
  socket.bind(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: socket.address().port }) + '\n')
  })
} else {
  let resolve = null
  socket.on('message', () => { if (resolve) { const r = resolve; resolve = null; r() } })
  socket.connect(Number(port), '127.0.0.1', async () => {
    const buf = Buffer.from('p')
    const rtts = []
    for (let i = 0; i < WARMUP + Number(rounds); i++) {
      const reply = new Promise((r) => { resolve = r })
      const timer = setTimeout(() => { throw new Error('no echo within 10 s') }, 10000)
      const start = process.hrtime.bigint()
      socket.send(buf)
      await reply
      clearTimeout(timer)
      if (i >= WARMUP) rtts.push(Number(process.hrtime.bigint() - start))
    }
    printPercentiles(rtts)
    process.exit(0)
  })
}
