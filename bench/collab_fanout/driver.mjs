// Fan-out load driver: every Yjs client of a run lives in this one Node process (one clock).
//
//   node bench/collab_fanout/driver.mjs '<json config>'
//   node bench/collab_fanout/driver.mjs --url ws://127.0.0.1:1234 --rooms a,b --clients 5 --rate 10 \
//        --duration 10 --warmup 2 [--awareness] [--params '{"token":"..."}'] [--mode fanout|hold]
//
// Each client is a stock `WebsocketProvider` (y-websocket) on its own Y.Doc. In `fanout` mode
// every client writes `bench.set(clientKey, {t, seq})` at `rate` Hz (phases spread over the
// period) and every other client of the room records the latency of each value it observes.
// In `hold` mode each client writes one small entry, and the driver keeps all connections open
// until a line (or EOF) arrives on stdin: the orchestrator measures the server meanwhile.
//
// stdout carries JSON lines only: progress events ({"event": "synced" | "measure_start" |
// "measure_end" | "ready"}) that let the orchestrator sample the server at the right moments,
// then one final {"event": "result", ...}. Diagnostics go to stderr. Exit status 0 when the run
// completed, 2 when it could not (no sync, refused connections); the result line says why.

import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import * as Y from 'yjs'

const DEFAULTS = {
  url: 'ws://127.0.0.1:1234',
  rooms: ['bench-0'],
  clients: 2,
  rate: 10,
  duration: 10,
  warmup: 2,
  drain: 1,
  awareness: false,
  params: {},
  mode: 'fanout',
  syncTimeout: 30,
  // A provider refused this many times (HTTP error on the upgrade, or a 44xx close) aborts the run.
  maxRefusals: 3
}

const FLAG_NAMES = {
  '--url': 'url',
  '--rooms': 'rooms',
  '--clients': 'clients',
  '--rate': 'rate',
  '--duration': 'duration',
  '--warmup': 'warmup',
  '--drain': 'drain',
  '--params': 'params',
  '--mode': 'mode',
  '--sync-timeout': 'syncTimeout',
  '--max-refusals': 'maxRefusals'
}

function parseArgs (argv) {
  const cfg = { ...DEFAULTS }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg.startsWith('{')) {
      Object.assign(cfg, JSON.parse(arg))
    } else if (arg === '--awareness') {
      cfg.awareness = true
    } else if (arg in FLAG_NAMES) {
      const value = argv[++i]
      if (value === undefined) throw new Error(`${arg} needs a value`)
      const key = FLAG_NAMES[arg]
      if (key === 'rooms') cfg.rooms = value.split(',').filter(Boolean)
      else if (key === 'params') cfg.params = JSON.parse(value)
      else if (key === 'url' || key === 'mode') cfg[key] = value
      else cfg[key] = Number(value)
    } else {
      throw new Error(`unknown argument ${arg}`)
    }
  }
  if (!Array.isArray(cfg.rooms) || cfg.rooms.length === 0) throw new Error('rooms: give at least one')
  if (!(cfg.clients >= 1)) throw new Error('clients must be >= 1')
  if (cfg.mode !== 'fanout' && cfg.mode !== 'hold') throw new Error('mode is fanout or hold')
  if (cfg.mode === 'fanout' && !(cfg.rate > 0)) throw new Error('rate must be > 0')
  return cfg
}

const now = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const log = (msg) => process.stderr.write(`[driver] ${msg}\n`)

function percentile (sorted, p) {
  if (sorted.length === 0) return null
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[idx]
}

const round = (x, digits = 3) => (x === null || x === undefined ? null : Number(x.toFixed(digits)))

class Client {
  constructor (cfg, roomIndex, room, indexInRoom, globalIndex, run) {
    this.key = `c${indexInRoom}`
    this.room = room
    this.roomIndex = roomIndex
    this.globalIndex = globalIndex
    this.run = run
    this.doc = new Y.Doc()
    this.map = this.doc.getMap('bench')
    this.seq = 0
    // Per sender key: highest seq observed. Yjs integrates a client's updates in clock order, so
    // seeing seq s means every earlier write of that sender reached this doc (possibly merged
    // into one transaction, in which case the intermediate values are "superseded", not lost).
    this.maxSeen = new Map()
    this.refusals = 0
    this.lastProblem = null
    this.provider = new WebsocketProvider(cfg.url, room, this.doc, {
      WebSocketPolyfill: WebSocket,
      disableBc: true,
      params: cfg.params
    })
    if (cfg.awareness) {
      this.provider.awareness.setLocalState({
        user: { name: `bench-${globalIndex}` },
        cursor: { x: 0, y: 0 }
      })
    } else {
      this.provider.awareness.setLocalState(null)
    }
    this.provider.on('connection-error', (event) => {
      const message = event?.message ?? event?.error?.message ?? String(event?.type ?? event)
      this.lastProblem = `connection error: ${message}`
      if (/Unexpected server response/.test(message)) this.refusals++
    })
    this.disconnects = 0
    this.provider.on('connection-close', (event) => {
      if (this.run.started) this.disconnects++
      if (event) {
        const what = `closed: code ${event.code}${event.reason ? ` (${event.reason})` : ''}`
        // A refused upgrade also closes with 1006; keep the HTTP error it came with.
        const keep = event.code === 1006 && this.lastProblem?.startsWith('connection error')
        this.lastProblem = keep ? `${this.lastProblem.split('; closed')[0]}; ${what}` : what
        if (event.code >= 4000 && event.code < 5000) this.refusals++
      }
    })
    this.provider.on('closed', (event) => {
      this.lastProblem = `closed for good: code ${event.code}${event.reason ? ` (${event.reason})` : ''}`
      this.refusals = Infinity
    })
    this.map.observe((event) => this.onChange(event))
  }

  onChange (event) {
    if (event.transaction.local) return
    const t = now()
    for (const key of event.keysChanged) {
      if (key === this.key) continue
      const value = this.map.get(key)
      if (!value || typeof value.seq !== 'number') continue
      const prev = this.maxSeen.get(key) ?? -1
      if (value.seq <= prev) continue
      this.maxSeen.set(key, value.seq)
      this.run.observed(key, this, value, t, value.seq - prev - 1)
    }
  }

  write () {
    const seq = this.seq++
    const t = now()
    this.map.set(this.key, { t, seq })
    return { seq, t }
  }

  moveCursor () {
    const s = this.seq
    this.provider.awareness.setLocalStateField('cursor', { x: (s * 7) % 1000, y: (s * 13) % 1000 })
  }

  destroy () {
    this.provider.destroy()
    this.doc.destroy()
  }
}

class Run {
  constructor (cfg) {
    this.cfg = cfg
    this.clients = []
    this.measuring = false
    this.measureStart = Infinity
    this.measureEnd = Infinity
    this.latencies = []
    this.bySecond = []
    this.superseded = 0
    this.started = false
  }

  open () {
    let g = 0
    const perRoom = this.cfg.mode === 'hold' ? Math.max(1, this.cfg.clients) : this.cfg.clients
    this.cfg.rooms.forEach((room, r) => {
      for (let i = 0; i < perRoom; i++) this.clients.push(new Client(this.cfg, r, room, i, g++, this))
    })
  }

  observed (senderKey, receiver, value, t, skipped) {
    // Only writes issued inside the measurement window count (by their own timestamp).
    if (value.t < this.measureStart || value.t >= this.measureEnd) return
    this.latencies.push(t - value.t)
    const second = Math.floor((value.t - this.measureStart) / 1000)
    ;(this.bySecond[second] ??= []).push(t - value.t)
    this.superseded += Math.max(0, skipped)
  }

  async waitSynced () {
    const started = now()
    const deadline = started + this.cfg.syncTimeout * 1000
    for (;;) {
      const unsynced = this.clients.filter((c) => !c.provider.synced)
      if (unsynced.length === 0) return { ok: true, ms: now() - started }
      const refused = this.clients.find((c) => c.refusals >= this.cfg.maxRefusals)
      if (refused) {
        return {
          ok: false,
          ms: now() - started,
          error: `server refused room ${JSON.stringify(refused.room)} ${refused.refusals === Infinity ? '' : `${refused.refusals} times`}: ${refused.lastProblem}`.replace(/ +/g, ' ')
        }
      }
      if (now() > deadline) {
        const sample = unsynced[0]
        return {
          ok: false,
          ms: now() - started,
          error: `${unsynced.length}/${this.clients.length} clients not synced after ${this.cfg.syncTimeout} s` +
            (sample.lastProblem ? `; e.g. room ${JSON.stringify(sample.room)}: ${sample.lastProblem}` : '')
        }
      }
      await sleep(20)
    }
  }

  // Connections lost after the sync (each reconnects by itself): count, and one reason.
  connectionProblems () {
    const hit = this.clients.filter((c) => c.disconnects > 0 || !c.provider.wsconnected)
    if (hit.length === 0) return null
    const total = this.clients.reduce((n, c) => n + c.disconnects, 0)
    return `${hit.length} clients lost their connection (${total} closes); e.g. room ` +
      `${JSON.stringify(hit[0].room)}: ${hit[0].lastProblem ?? 'not connected at the end'}`
  }

  // Schedules every client's writes against absolute times (no drift); returns when writes stop.
  async fanout () {
    const { rate, duration, warmup } = this.cfg
    const period = 1000 / rate
    const n = this.clients.length
    const t0 = performance.now() + 50
    const stopAt = t0 + (warmup + duration) * 1000
    const windowStartPerf = t0 + warmup * 1000
    this.measureStart = performance.timeOrigin + windowStartPerf
    this.measureEnd = performance.timeOrigin + stopAt
    const firstSeq = new Array(n).fill(null)
    const lastSeq = new Array(n).fill(-1)
    let writesInWindow = 0
    let cursorMoves = 0
    let done = 0
    await new Promise((resolve) => {
      this.clients.forEach((client, i) => {
        // Spread phases: client i starts at i/n of the period, so writes tick evenly.
        const offset = (i / n) * period
        let k = 0
        const tick = () => {
          const due = t0 + offset + k * period
          if (due >= stopAt) {
            if (++done === n) resolve()
            return
          }
          const { seq, t } = client.write()
          if (t >= this.measureStart && t < this.measureEnd) {
            if (firstSeq[i] === null) firstSeq[i] = seq
            lastSeq[i] = seq
            writesInWindow++
          }
          k++
          setTimeout(tick, Math.max(0, t0 + offset + k * period - performance.now()))
        }
        setTimeout(tick, Math.max(0, t0 + offset - performance.now()))
        if (this.cfg.awareness) {
          let m = 0
          const move = () => {
            const due = t0 + offset + period / 2 + m * period
            if (due >= stopAt) return
            client.moveCursor()
            const t = now()
            if (t >= this.measureStart && t < this.measureEnd) cursorMoves++
            m++
            setTimeout(move, Math.max(0, t0 + offset + period / 2 + m * period - performance.now()))
          }
          setTimeout(move, Math.max(0, t0 + offset + period / 2 - performance.now()))
        }
      })
      setTimeout(() => emit({ event: 'measure_start' }), Math.max(0, windowStartPerf - performance.now()))
    })
    return { firstSeq, lastSeq, writesInWindow, cursorMoves }
  }

  tally ({ firstSeq, lastSeq, writesInWindow }) {
    // Delivered (sender, seq) pairs of the window, per receiver, from the highest seq seen.
    const byRoom = new Map()
    this.clients.forEach((c, i) => {
      if (!byRoom.has(c.roomIndex)) byRoom.set(c.roomIndex, [])
      byRoom.get(c.roomIndex).push(i)
    })
    let expected = 0
    let delivered = 0
    for (const members of byRoom.values()) {
      for (const s of members) {
        if (firstSeq[s] === null) continue
        const count = lastSeq[s] - firstSeq[s] + 1
        const key = this.clients[s].key
        for (const r of members) {
          if (r === s) continue
          expected += count
          const seen = this.clients[r].maxSeen.get(key) ?? -1
          delivered += Math.max(0, Math.min(seen, lastSeq[s]) - firstSeq[s] + 1)
        }
      }
    }
    return { expected, delivered, writesInWindow }
  }

  shutdown () {
    for (const c of this.clients) {
      try {
        c.destroy()
      } catch (err) {
        log(`destroy failed: ${err}`)
      }
    }
  }
}

function waitForStdin () {
  return new Promise((resolve) => {
    const done = () => resolve()
    process.stdin.once('data', done)
    process.stdin.once('end', done)
    process.stdin.once('close', done)
    process.stdin.resume()
  })
}

async function main () {
  process.setMaxListeners(0) // one 'exit' listener per provider
  const cfg = parseArgs(process.argv.slice(2))
  const run = new Run(cfg)
  const base = {
    event: 'result',
    mode: cfg.mode,
    rooms: cfg.rooms.length,
    clients_per_room: cfg.clients,
    clients: cfg.rooms.length * cfg.clients,
    awareness: cfg.awareness
  }
  run.open()
  const sync = await run.waitSynced()
  if (!sync.ok) {
    emit({ ...base, ok: false, error: sync.error, sync_ms: round(sync.ms, 1) })
    run.shutdown()
    return 2
  }
  run.started = true
  emit({ event: 'synced', sync_ms: round(sync.ms, 1) })
  log(`${run.clients.length} clients synced in ${sync.ms.toFixed(0)} ms`)

  if (cfg.mode === 'hold') {
    run.clients.forEach((c) => c.map.set(c.key, { t: now(), seq: 0, note: 'hold' }))
    await sleep(200)
    emit({ event: 'ready' })
    await waitForStdin()
    const problem = run.connectionProblems()
    run.shutdown()
    emit({ ...base, ok: problem === null, error: problem, sync_ms: round(sync.ms, 1) })
    return problem ? 2 : 0
  }

  const writes = await run.fanout()
  await sleep(cfg.drain * 1000)
  emit({ event: 'measure_end' })
  const { expected, delivered, writesInWindow } = run.tally(writes)
  const problem = run.connectionProblems()
  const lat = Float64Array.from(run.latencies).sort()
  const windowS = cfg.duration
  const offered = writesInWindow / windowS
  emit({
    ...base,
    ok: true,
    error: problem,
    rate_hz_per_client: cfg.rate,
    window_s: windowS,
    sync_ms: round(sync.ms, 1),
    writes: writesInWindow,
    offered_per_s: round(offered, 1),
    target_offered_per_s: round(cfg.rate * run.clients.length, 1),
    expected_deliveries: expected,
    delivered,
    delivered_per_s: round(delivered / windowS, 1),
    delivery_ratio: expected ? round(delivered / expected, 6) : null,
    lost: expected - delivered,
    superseded: run.superseded,
    latency_samples: lat.length,
    p50_ms: round(percentile(lat, 50)),
    p99_ms: round(percentile(lat, 99)),
    max_ms: round(lat.length ? lat[lat.length - 1] : null),
    // p99 per second of the window (by send time): tells a warm-up transient from a steady state.
    p99_ms_by_second: Array.from(run.bySecond, (xs) => xs ? round(percentile(Float64Array.from(xs).sort(), 99), 1) : null),
    cursor_moves_per_s: round(writes.cursorMoves / windowS, 1)
  })
  run.shutdown()
  return 0
}

main().then(
  (code) => {
    process.exitCode = code
    // Providers are destroyed; if a socket lingers in CLOSING, do not hang the orchestrator.
    setTimeout(() => process.exit(code), 2000).unref()
  },
  (err) => {
    log(err?.stack ?? String(err))
    emit({ event: 'result', ok: false, error: String(err?.message ?? err) })
    process.exit(2)
  }
)
