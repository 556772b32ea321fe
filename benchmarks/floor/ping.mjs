// Bare Node.js TCP ping: ROUNDS 1-byte round trips to PORT; prints p50/p99/mean in µs.
import net from 'node:net'
import { printPercentiles } from './percentiles.mjs'

const [rounds, port] = process.argv.slice(2).map(Number)
const WARMUP = 500
const socket = net.connect(port, '127.0.0.1', async () => {
  socket.setNoDelay(true)
  let resolve = null
  socket.on('data', () => { if (resolve) { const r = resolve; resolve = null; r() } })
  const rtts = []
  for (let i = 0; i < WARMUP + rounds; i++) {
    const reply = new Promise((r) => { resolve = r })
    const start = process.hrtime.bigint()
    socket.write('p')
    await reply
    if (i >= WARMUP) rtts.push(Number(process.hrtime.bigint() - start))
  }
  printPercentiles(rtts)
  socket.end()
  process.exit(0)
})
