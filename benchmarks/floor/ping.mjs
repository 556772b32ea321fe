// Bare Node.js TCP ping: ROUNDS 1-byte round trips to PORT; prints p50/p99/mean in µs.
import net from 'node:net'

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
  rtts.sort((a, b) => a - b)
  const rank = (p) => rtts[Math.min(rtts.length - 1, Math.max(0, Math.round(p * rtts.length) - 1))] / 1000
  const mean = rtts.reduce((a, b) => a + b, 0) / rtts.length / 1000
  process.stdout.write(JSON.stringify({ p50_us: rank(0.5), p99_us: rank(0.99), mean_us: mean }) + '\n')
  socket.end()
  process.exit(0)
})
