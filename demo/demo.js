// The demo page: sign in, receive notifications through the service's client
// helper, send some. Event data is user input: it is rendered with textContent only.
import { connectNotify } from '/client.js'

const TYPES = ['comment.liked', 'order.shipped', 'job.finished']
// A job's progress steps: shown as a bar, not as notifications.
const PROGRESS = 'job.progress'
const SAMPLES = {
  'comment.liked': 'liked your comment on "Release notes 1.4"',
  'order.shipped': 'Order A-1042 has shipped and arrives Thursday',
  'job.finished': 'Nightly export finished in 3 min 12 s',
}
const $ = (selector) => document.querySelector(selector)
let client = null

async function api(method, path, body) {
  const init = { method }
  if (body !== undefined) init.headers = { 'content-type': 'application/json' }
  if (body !== undefined) init.body = JSON.stringify(body)
  const res = await fetch(path, init)
  const data = res.status === 204 ? null : await res.json().catch(() => null)
  return { ok: res.ok, status: res.status, data }
}

function showError(form, message) {
  form.querySelector('.error').textContent = message ?? ''
}

function showSignedOut(message) {
  client?.close()
  client = null
  $('#signed-in').hidden = true
  $('#signed-out').hidden = false
  showError($('#sign-in'), message)
  $('#user').focus()
}

function showSignedIn(user) {
  $('#me').textContent = user
  $('#to').value = user
  $('#notifications').replaceChildren()
  $('#jobs').replaceChildren()
  restoreJobs()
  $('#empty').hidden = false
  $('#note').hidden = true
  $('#signed-out').hidden = true
  $('#signed-in').hidden = false
  client = connectNotify({
    url: '/notify',
    user,
    types: [...TYPES, PROGRESS],
    onEvent: (event) => (event.type === PROGRESS ? showProgress(event) : addNotification(event)),
    onState: showState,
    onResync: () => {
      $('#note').textContent = 'Missed events were too old; list refreshed.'
      $('#note').hidden = false
    },
    onAuthExpired: async () => {
      const ok = (await fetch('/demo/refresh', { method: 'POST' })).ok
      // The session is gone (signed out in another tab, or expired): back to sign-in.
      if (!ok) setTimeout(() => showSignedOut('Your session ended; sign in again.'))
      return ok
    },
  })
  showState(client.state)
}

function showState(state) {
  const badge = $('#state')
  badge.dataset.state = state
  badge.textContent = state
  // Read on every change: the tab holding the connection can change. While
  // connecting, the tabs may not have settled which one holds it.
  $('#leader').textContent =
    state === 'closed' || state === 'connecting' ? ''
      : client?.leader ? 'this tab holds the connection' : 'shared from another tab'
}

// One row per job. A step replaces what its row showed, as it replaced the
// previous step in the history. The rows are kept in sessionStorage, the
// page's own state across a reload; the steps it missed meanwhile come from
// the stream, which resumes from the last id this tab had: one event, the
// latest step, however many there were.
const jobsKey = () => `demo:${$('#me').textContent}:jobs`

function showProgress({ data }) {
  const row = jobRow(String(data?.job ?? ''), Math.max(0, Math.min(100, Number(data?.percent) || 0)))
  row.dataset.updates = String(Number(row.dataset.updates ?? 0) + 1)
  const rows = [...$('#jobs').children].map((li) => ({ job: li.dataset.job, percent: Number(li.dataset.percent) }))
  try {
    sessionStorage.setItem(jobsKey(), JSON.stringify(rows))
  } catch {
    // Storage full or off: the rows just do not survive a reload.
  }
}

function restoreJobs() {
  let rows = []
  try {
    rows = JSON.parse(sessionStorage.getItem(jobsKey()) ?? '[]')
  } catch {
    rows = []
  }
  for (const { job, percent } of Array.isArray(rows) ? rows.reverse() : []) jobRow(String(job), Number(percent) || 0)
}

function jobRow(job, percent) {
  let row = [...$('#jobs').children].find((li) => li.dataset.job === job)
  if (!row) {
    row = document.createElement('li')
    row.dataset.job = job
    const name = document.createElement('span')
    name.textContent = `Job ${job}`
    const value = document.createElement('span')
    value.className = 'percent'
    const bar = document.createElement('progress')
    bar.max = 100
    row.append(name, value, bar)
    $('#jobs').prepend(row)
    while ($('#jobs').children.length > 5) $('#jobs').lastElementChild.remove()
  }
  row.querySelector('.percent').textContent = `${percent} %`
  row.querySelector('progress').value = percent
  row.dataset.percent = String(percent)
  if (percent === 100) row.dataset.done = ''
  return row
}

function addNotification({ type, id, data }) {
  const list = $('#notifications')
  const li = document.createElement('li')
  if (id) li.dataset.id = id
  li.dataset.type = type
  const label = document.createElement('span')
  label.className = 'label'
  label.textContent = type
  const text = document.createElement('p')
  text.textContent = String(data?.text ?? '')
  const meta = document.createElement('small')
  const at = new Date(data?.sent_at ?? Date.now())
  meta.textContent = `from ${data?.from ?? 'unknown'} · ${at.toLocaleTimeString()}`
  li.append(label, text, meta)
  list.prepend(li)
  while (list.children.length > 50) list.lastElementChild.remove()
  $('#empty').hidden = true
}

$('#sign-in').addEventListener('submit', async (e) => {
  e.preventDefault()
  const res = await api('POST', '/demo/session', { user: $('#user').value.trim() })
  if (!res.ok) return showError(e.target, res.data?.message ?? `Sign-in failed (${res.status})`)
  showError(e.target, '')
  showSignedIn(res.data.user)
})

$('#sign-out').addEventListener('click', async () => {
  client?.close()
  client = null
  await api('DELETE', '/demo/session')
  showSignedOut()
})

$('#start-job').addEventListener('click', async () => {
  const res = await api('POST', '/demo/job')
  if (res.status === 401) showSignedOut('Your session ended; sign in again.')
})

$('#type').addEventListener('change', () => {
  $('#text').placeholder = SAMPLES[$('#type').value]
})

$('#send').addEventListener('submit', async (e) => {
  e.preventDefault()
  const form = e.target
  const body = { to: $('#to').value.trim(), type: $('#type').value, text: $('#text').value.trim() }
  const res = await api('POST', '/demo/send', body)
  if (res.status === 401) return showSignedOut('Your session ended; sign in again.')
  if (!res.ok) return showError(form, res.data?.message ?? `Sending failed (${res.status})`)
  showError(form, '')
  $('#text').value = ''
  $('#text').focus()
})

// A returning visitor with a live session gets a fresh access token and goes straight in.
$('#text').placeholder = SAMPLES[$('#type').value]
const session = await api('POST', '/demo/refresh')
if (session.ok) showSignedIn(session.data.user)
else showSignedOut()
