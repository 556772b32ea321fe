// Bare Node.js TCP echo on 127.0.0.1: prints {"port": N}, echoes until killed.
import net from 'node:net'

const server = net.createServer((socket) => {
  socket.setNoDelay(true)
  socket.on('data', (data) => socket.write(data))
})
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n')
})
