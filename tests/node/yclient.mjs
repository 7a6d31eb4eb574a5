// A y-websocket client for the tests: the stock WebsocketProvider, unchanged.
// Usage: node yclient.mjs '<json>' with
//   {serverUrl, room, params, key, value, expectKeys: [...], timeoutMs, holdMs, offlineFirst}
// It connects, sets map "m"[key] = value (once synced, or before connecting when
// offlineFirst), waits until every key in expectKeys is present, prints one JSON line
// {ok, synced, map, permissionDenied, closeCodes, peers (most seen at once)} and exits.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const opts = JSON.parse(process.argv[2])
const doc = new Y.Doc()
const map = doc.getMap('m')
const closeCodes = []
let permissionDenied = false
if (opts.offlineFirst && opts.key) map.set(opts.key, opts.value)
const provider = new WebsocketProvider(opts.serverUrl, opts.room, doc, {
  WebSocketPolyfill: WebSocket, disableBc: true, params: opts.params || {},
  maxBackoffTime: 500
})
provider.on('connection-close', (event) => { if (event) closeCodes.push(event.code) })
const origWarn = console.warn
console.warn = (...args) => {
  if (String(args[0]).includes('Permission denied')) permissionDenied = true
  else origWarn(...args)
}
provider.awareness.setLocalStateField('user', { name: opts.key || 'reader' })
// Peers come and go; the most seen at once shows whether presence reached us.
let maxPeers = 1
provider.awareness.on('change', () => { maxPeers = Math.max(maxPeers, provider.awareness.getStates().size) })

const deadline = Date.now() + (opts.timeoutMs || 10000)
const done = (ok) => {
  const out = { ok, synced: provider.synced, map: map.toJSON(), permissionDenied, closeCodes,
                peers: maxPeers }
  process.stdout.write(JSON.stringify(out) + '\n')
  provider.destroy()
  setTimeout(() => process.exit(ok ? 0 : 1), 50)
}
let wrote = !!opts.offlineFirst || !opts.key
const tick = () => {
  if (provider.synced && !wrote && opts.key) { map.set(opts.key, opts.value); wrote = true }
  const have = (opts.expectKeys || []).every((k) => map.has(k))
  if (provider.synced && wrote !== false && have) {
    setTimeout(() => done(true), opts.holdMs || 0)
    return
  }
  if (Date.now() > deadline) { done(false); return }
  setTimeout(tick, 20)
}
tick()
