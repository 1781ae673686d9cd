// Ferry's pages: one module, no framework, no build step (docs/adr/0007-web-front-end.md).
// The server renders the HTML; this script acts through the JSON API (/api/v1, with the
// session cookie) and keeps numbers live from the jobs feed. Text that comes from users,
// torrents or servers is only ever set with textContent, never parsed as HTML.

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** An API answer's error as a sentence for people (the API's own message, capitalised). */
function sentence(body, status) {
  const m = body && typeof body.message === 'string' ? body.message.trim() : '';
  if (m) return m.charAt(0).toUpperCase() + m.slice(1) + (/[.!?)]$/.test(m) ? '' : '.');
  if (status === 429) return 'Too many requests; wait a moment and try again.';
  if (status === 413) return 'That is too large for this server.';
  if (status >= 500) return 'Ferry could not do that just now; try again shortly.';
  return `That did not work (HTTP ${status}).`;
}

const signedOutPages = new Set(['login', 'setup']);

function toLogin() {
  const here = location.pathname + location.search;
  location.assign('/login?next=' + encodeURIComponent(here));
}

/** Calls the API; answers its JSON, or throws an ApiError carrying a sentence. */
async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch('/api/v1' + path, init);
  } catch {
    throw new ApiError('Ferry cannot be reached; check your connection.', 'offline', 0);
  }
  const text = await r.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (r.status === 401 && !signedOutPages.has(document.body.dataset.page)) {
    toLogin();
    throw new ApiError('Your session has ended; sign in again.', 'unauthorized', 401);
  }
  if (!r.ok) throw new ApiError(sentence(data, r.status), data && data.code, r.status);
  return data;
}

function say(el, text) {
  if (el) el.textContent = text || '';
}

// ---- numbers, as the server writes them (api/src/web/human.rs) ----

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}
const rate = (n) => (n ? `${bytes(n)}/s` : '');
function duration(s) {
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  const two = (x) => String(x).padStart(2, '0');
  if (h >= 24) return `${Math.floor(h / 24)}d ${two(h % 24)}h`;
  if (h > 0) return `${h}h ${two(m)}m`;
  if (m > 0) return `${m}m ${two(sec)}s`;
  return `${sec}s`;
}

// ---- everywhere ----

document.addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-act="logout"], button[data-act="logout-everywhere"]');
  if (!b) return;
  const everywhere = b.dataset.act === 'logout-everywhere';
  try {
    await api('POST', everywhere ? '/auth/logout-everywhere' : '/auth/logout');
  } catch { /* signed out either way */ }
  location.assign('/login');
});

// ---- sign in, first-run setup ----

function initLogin() {
  const form = $('#login-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    say($('#login-error'), '');
    try {
      await api('POST', '/auth/login', { username: form.username.value, password: form.password.value });
      location.assign(form.dataset.next || '/');
    } catch (err) {
      say($('#login-error'), err.message);
      form.password.focus();
    }
  });
}

function initSetup() {
  const form = $('#setup-form');
  let link = '';
  try { link = decodeURIComponent(location.hash.slice(1)); } catch { link = ''; }
  if (!link) say($('#setup-error'), 'Open the setup link Ferry printed when it first started.');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    say($('#setup-error'), '');
    try {
      await api('POST', '/auth/setup', { link, username: form.username.value, password: form.password.value });
      history.replaceState(null, '', '/setup');
      location.assign('/');
    } catch (err) {
      say($('#setup-error'), err.message);
    }
  });
}

// ---- jobs: live rows, actions, selection ----

function row(id) {
  return document.getElementById('job-' + id);
}

/** Patches a row's numbers from a progress or status event (no layout change). */
function patch(tr, ev) {
  const p = ev.progress;
  if (!p) return;
  const pct = Math.round((p.bytes_total ? (p.bytes_done / p.bytes_total) : (ev.status === 'completed' ? 1 : 0)) * 1000) / 10;
  const set = (f, text) => { const el = $(`[data-f="${f}"]`, tr); if (el && el.textContent !== text) el.textContent = text; };
  const bar = $('[data-f="bar"]', tr);
  if (bar) bar.value = pct;
  set('percent', `${pct.toFixed(1)}%`);
  set('size', p.bytes_total ? bytes(p.bytes_total) : '');
  set('rate', rate(ev.status === 'downloading' ? p.download_rate : ev.status === 'seeding' ? p.upload_rate : 0));
  set('eta', ev.status === 'downloading' && p.eta_seconds != null ? duration(p.eta_seconds) : '');
  set('peers', p.peers ? String(p.peers) : '');
  set('ratio', ev.status === 'seeding' || p.uploaded_bytes > 0 ? p.ratio.toFixed(2) : '');
}

let refreshing = null;
/** Swaps in freshly rendered rows (the server escapes every name), keeping the selection. */
function refreshRows() {
  if (document.body.dataset.page !== 'jobs') return;
  clearTimeout(refreshing);
  refreshing = setTimeout(async () => {
    const url = new URL(location.href);
    url.searchParams.set('fragment', 'rows');
    const r = await fetch(url, { credentials: 'same-origin' });
    if (r.redirected || r.status === 401) { toLogin(); return; }
    if (!r.ok) return;
    const doc = new DOMParser().parseFromString(`<table>${await r.text()}</table>`, 'text/html');
    const fresh = doc.getElementById('jobs-rows');
    const old = $('#jobs-rows');
    if (!fresh || !old) return;
    const picked = new Set(selected());
    old.replaceWith(document.adoptNode(fresh));
    for (const box of $$('input.pick')) box.checked = picked.has(box.value);
    updateBulk();
  }, 250);
}

let deleting = false; // the job page: a delete in flight (its status events change nothing)
let backoff = 3000;

/** The job page: reloads when the job's status is no longer the one it shows. */
async function checkJob() {
  const tr = $('#jobs-rows tr[data-job]');
  if (!tr || deleting) return;
  try {
    const job = await api('GET', `/jobs/${tr.dataset.job}`);
    if (job.status !== tr.dataset.status && !deleting && !$$('audio, video').some((m) => !m.paused)) {
      location.reload();
    }
  } catch { /* gone or signed out: api() has handled it */ }
}

function follow() {
  const source = new EventSource('/api/v1/jobs/events');
  source.addEventListener('ready', () => {
    backoff = 3000;
    // A (re)connected feed replays nothing: what changed before it opened (even between
    // this page's rendering and now) is read afresh.
    if (document.body.dataset.page === 'job') {
      checkJob();
    } else {
      refreshRows();
    }
  });
  source.addEventListener('progress', (e) => {
    const ev = JSON.parse(e.data);
    const tr = row(ev.job_id);
    if (tr) patch(tr, ev);
  });
  source.addEventListener('status', (e) => {
    const ev = JSON.parse(e.data);
    const tr = row(ev.job_id);
    if (document.body.dataset.page === 'job') {
      if (tr && tr.dataset.status !== ev.status && !deleting && !$$('audio, video').some((m) => !m.paused)) location.reload();
      else if (tr) patch(tr, ev);
      return;
    }
    if (tr) patch(tr, ev);
    refreshRows();
  });
  source.addEventListener('error', async () => {
    if (source.readyState !== EventSource.CLOSED) return;
    // Refused: the session may have ended (signed out elsewhere, or disabled); otherwise
    // try again later, less often each time (a busy server, too many open streams).
    const r = await fetch('/api/v1/me', { credentials: 'same-origin' }).catch(() => null);
    if (r && r.status === 401) { toLogin(); return; }
    const wait = backoff * (0.75 + Math.random() / 2);
    backoff = Math.min(backoff * 2, 60000);
    setTimeout(follow, wait);
  });
}

function selected() {
  return $$('input.pick:checked').map((b) => b.value);
}

function updateBulk() {
  const n = selected().length;
  say($('#bulk-count'), n ? `${n} selected` : 'None selected');
  for (const b of $$('#bulk button')) b.disabled = n === 0;
}

/** Asks (in the page's dialog) whether to delete `what` and its files. */
function confirmDelete(what) {
  const dialog = $('#delete-dialog');
  const box = $('#delete-files');
  const ok = $('#delete-confirm');
  say($('#delete-what'), what);
  box.checked = false;
  ok.disabled = true;
  box.onchange = () => { ok.disabled = !box.checked; };
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'delete' && box.checked), { once: true });
  });
}

async function act(action, id) {
  if (action === 'cancel') return api('DELETE', `/jobs/${id}`);
  if (action === 'delete') return api('DELETE', `/jobs/${id}?purge=true`);
  return api('POST', `/jobs/${id}/${action}`);
}

function initJobs() {
  bindJobActions();
  follow();
}

function bindJobActions() {
  updateBulk();
  document.addEventListener('change', (e) => {
    if (e.target.id === 'pick-all') {
      for (const b of $$('input.pick')) b.checked = e.target.checked;
    }
    if (e.target.matches('input.pick, #pick-all')) updateBulk();
  });
  document.addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-job][data-act]');
    if (b) {
      const tr = b.closest('tr');
      const err = tr && $('[data-f="error"]', tr);
      say(err, '');
      if (b.dataset.act === 'delete' && !(await confirmDelete(b.dataset.name))) return;
      b.disabled = true;
      deleting = b.dataset.act === 'delete';
      try {
        await act(b.dataset.act, b.dataset.job);
        if (document.body.dataset.page === 'job') {
          if (b.dataset.act === 'delete') location.assign('/'); else location.reload();
        } else {
          refreshRows();
        }
      } catch (error) {
        say(err, error.message);
        deleting = false;
      } finally {
        b.disabled = false;
      }
      return;
    }
    const bulk = e.target.closest('button[data-bulk]');
    if (bulk) {
      const ids = selected();
      const action = bulk.dataset.bulk;
      say($('#bulk-error'), '');
      if (!ids.length) return;
      if (action === 'delete' && !(await confirmDelete(`${ids.length} jobs`))) return;
      const failed = [];
      for (const id of ids) {
        try { await act(action, id); } catch (error) {
          const tr = row(id);
          const name = tr ? $('td.name a', tr).textContent : id;
          failed.push(`${name}: ${error.message}`);
        }
      }
      say($('#bulk-error'), failed.join(' '));
      refreshRows();
    }
  });
}

// ---- one job: files, links, player ----

async function copy(text, fallbackNear) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const input = document.createElement('input');
    input.readOnly = true;
    input.value = text;
    input.setAttribute('aria-label', 'Link to copy');
    fallbackNear.after(input);
    input.select();
    return false;
  }
}

function initJob() {
  bindJobActions();
  follow();
  const limits = $('#limits-form');
  limits?.addEventListener('submit', async (e) => {
    e.preventDefault();
    say($('#limits-error'), '');
    say($('#limits-status'), '');
    const bad = $$('input', limits).find((i) => !i.checkValidity());
    if (bad) { say($('#limits-error'), 'A limit is a whole number of KiB/s, at least 16.'); bad.focus(); return; }
    const bps = (input) => (input.value.trim() ? Number(input.value) * 1024 : null);
    try {
      const body = { upload_limit: bps(limits.up) };
      if (limits.down) body.download_limit = bps(limits.down);
      await api('PUT', `/jobs/${limits.dataset.job}/limits`, body);
      say($('#limits-status'), 'Saved.');
    } catch (error) { say($('#limits-error'), error.message); }
  });
  document.addEventListener('click', async (e) => {
    const link = e.target.closest('button[data-link]');
    if (link) {
      say($('#files-error'), '');
      try {
        const made = await api('GET', `/jobs/${link.dataset.job}/files/${link.dataset.link}/link`);
        if (await copy(made.url, link)) link.textContent = 'Link copied';
      } catch (error) { say($('#files-error'), error.message); }
      return;
    }
    const play = e.target.closest('button[data-play]');
    if (play) {
      const media = document.createElement(play.dataset.kind === 'audio' ? 'audio' : 'video');
      media.controls = true;
      media.preload = 'auto';
      media.src = `/api/v1/jobs/${play.dataset.job}/files/${play.dataset.play}`;
      media.addEventListener('error', () => say($('#files-error'), 'This browser cannot play this file; download it instead.'));
      $('#player').replaceChildren(media);
      media.play().catch(() => {});
      return;
    }
    const magnet = e.target.closest('button[data-magnet]');
    if (magnet) {
      try {
        const m = await api('GET', `/jobs/${magnet.dataset.magnet}/magnet`);
        if (await copy(m.magnet, magnet)) magnet.textContent = 'Magnet copied';
      } catch (error) { say($('#share-error'), error.message); }
    }
  });
}

// ---- add ----

// The form's destination: a profile's id, or null for this server's disk (said
// explicitly, so the user's default profile does not apply).
function destination(form) {
  const profile = form.storage_profile.value;
  return { storage_profile: profile === 'server' ? null : profile, seed: form.seed.checked };
}

function initAdd() {
  const links = $('#add-links');
  links.addEventListener('submit', async (e) => {
    e.preventDefault();
    const lines = links.links.value.split('\n').map((l) => l.trim()).filter(Boolean);
    const results = $('#links-results');
    results.replaceChildren();
    say($('#links-error'), lines.length ? '' : 'Paste at least one magnet link or URL.');
    let failed = 0;
    for (const line of lines) {
      const source = line.startsWith('magnet:') ? { magnet: line } : { url: line };
      const li = document.createElement('li');
      try {
        const job = await api('POST', '/jobs', { source, ...destination(links) });
        const a = document.createElement('a');
        a.href = `/jobs/${job.id}`;
        a.textContent = job.name;
        li.append('Added ', a);
      } catch (error) {
        failed += 1;
        li.className = 'error';
        li.textContent = `${line.length > 80 ? line.slice(0, 77) + '…' : line} — ${error.message}`;
      }
      results.append(li);
    }
    if (lines.length && !failed) location.assign('/');
  });

  const form = $('#add-torrent');
  const input = $('#torrent-file');
  const drop = $('#drop');
  let file = null;
  let files = [];

  async function analyze(f) {
    file = f;
    say($('#torrent-error'), '');
    $('#torrent-start').disabled = true;
    $('#tree-box').hidden = true;
    const body = new FormData();
    body.append('torrent', f, f.name);
    try {
      const a = await api('POST', '/torrents/analyze', body);
      files = a.files;
      say($('#tree-summary'), `${a.name}: ${a.files.length} file${a.files.length === 1 ? '' : 's'}, ${bytes(a.total_bytes)}`);
      renderTree(a.files);
      $('#tree-box').hidden = false;
      $('#torrent-start').disabled = false;
    } catch (error) {
      say($('#torrent-error'), error.message);
    }
  }

  function renderTree(list) {
    const root = { dirs: new Map(), files: [] };
    for (const f of list) {
      const parts = f.path.split('/');
      let node = root;
      for (const dir of parts.slice(0, -1)) {
        if (!node.dirs.has(dir)) node.dirs.set(dir, { dirs: new Map(), files: [] });
        node = node.dirs.get(dir);
      }
      node.files.push({ ...f, leaf: parts[parts.length - 1] });
    }
    const build = (node) => {
      const items = [];
      for (const [name, child] of node.dirs) {
        const li = document.createElement('li');
        const span = document.createElement('span');
        span.className = 'dir';
        span.textContent = name + '/';
        const ul = document.createElement('ul');
        ul.append(...build(child));
        li.append(span, ul);
        items.push(li);
      }
      for (const f of node.files) {
        const li = document.createElement('li');
        const label = document.createElement('label');
        label.className = 'check';
        const box = document.createElement('input');
        box.type = 'checkbox';
        box.checked = true;
        box.value = String(f.index);
        box.className = 'file';
        const name = document.createElement('span');
        name.textContent = f.leaf;
        const size = document.createElement('span');
        size.className = 'num';
        size.textContent = bytes(f.size);
        label.append(box, ' ', name, ' ', size);
        li.append(label);
        items.push(li);
      }
      return items;
    };
    $('#tree').replaceChildren(...build(root));
    $('#tree-all').checked = true;
  }

  $('#tree-all').addEventListener('change', (e) => {
    for (const b of $$('#tree input.file')) b.checked = e.target.checked;
  });
  $('#tree').addEventListener('change', () => {
    const boxes = $$('#tree input.file');
    $('#tree-all').checked = boxes.every((b) => b.checked);
  });
  input.addEventListener('change', () => { if (input.files[0]) analyze(input.files[0]); });
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add('over'); });
  }
  for (const type of ['dragleave', 'drop']) {
    drop.addEventListener(type, () => drop.classList.remove('over'));
  }
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = e.dataTransfer.files[0];
    if (f) analyze(f);
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!file) return;
    const chosen = $$('#tree input.file:checked').map((b) => b.value);
    if (!chosen.length) { say($('#torrent-error'), 'Choose at least one file.'); return; }
    const body = new FormData();
    body.append('torrent', file, file.name);
    if (chosen.length < files.length) body.append('files', chosen.join(','));
    const dest = destination(form);
    body.append('storage_profile', dest.storage_profile || 'server');
    body.append('seed', String(dest.seed));
    try {
      const job = await api('POST', '/jobs/torrent', body);
      location.assign(`/jobs/${job.id}`);
    } catch (error) {
      say($('#torrent-error'), error.message);
    }
  });
}

// ---- my account ----

function initAccount() {
  const form = $('#token-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    say($('#token-error'), '');
    const scopes = $$('input[name="scope"]:checked', form).map((b) => b.value);
    if (!scopes.length) { say($('#token-error'), 'Choose at least one scope.'); return; }
    const body = { name: form.name.value, scopes };
    const days = Number(form.days.value);
    if (days > 0) body.expires_at = new Date(Date.now() + days * 86400000).toISOString();
    try {
      const made = await api('POST', '/me/tokens', body);
      say($('#token-secret'), made.token);
      $('#token-new').hidden = false;
      const tr = document.createElement('tr');
      tr.dataset.token = made.id;
      const cells = [made.name, made.scopes.join(' '), 'just now', made.expires_at ? new Date(made.expires_at).toUTCString() : 'never', 'never'];
      for (const text of cells) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.append(td);
      }
      const td = document.createElement('td');
      const revoke = document.createElement('button');
      revoke.type = 'button';
      revoke.dataset.revoke = made.id;
      revoke.dataset.name = made.name;
      revoke.textContent = 'Revoke';
      td.append(revoke);
      tr.append(td);
      $('#tokens tr.empty')?.remove();
      $('#tokens').prepend(tr);
      form.reset();
    } catch (error) {
      say($('#token-error'), error.message);
    }
  });
  $('#token-copy').addEventListener('click', (e) => copy($('#token-secret').textContent, e.target));
  document.addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-revoke]');
    if (!b) return;
    if (!confirm(`Revoke the token “${b.dataset.name}”? Programs using it stop working at once.`)) return;
    try {
      await api('DELETE', `/me/tokens/${b.dataset.revoke}`);
      b.closest('tr').remove();
    } catch (error) {
      say($('#token-error'), error.message);
    }
  });
}

document.addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-end-session]');
  if (!b) return;
  say($('#session-error'), '');
  try {
    await api('DELETE', `/me/sessions/${b.dataset.endSession}`);
    b.closest('tr').remove();
  } catch (error) {
    say($('#session-error'), error.message);
  }
});

// ---- my storage ----

document.addEventListener('change', async (e) => {
  const radio = e.target.closest('input[name="default-profile"]');
  if (!radio) return;
  const status = $('#default-status');
  say(status, '');
  try {
    await api('PUT', '/me/default-storage-profile', { profile: radio.value === 'server' ? null : radio.value });
    say(status, 'Saved.');
  } catch (error) {
    say(status, error.message);
  }
});

const s3Hints = {
  name: 'Give the bucket a name you will recognise.',
  endpoint: 'The endpoint is a URL such as https://s3.eu-west-1.amazonaws.com.',
  region: 'Enter the bucket’s region (us-east-1 for most self-hosted servers).',
  bucket: 'Bucket names are 3–63 lowercase letters, digits, dots and hyphens.',
  access_key_id: 'Enter the access key id.',
  secret_access_key: 'Enter the secret access key.',
};

function fieldError(input, text) {
  let p = input.nextElementSibling;
  if (!p || !p.classList.contains('field-error')) {
    p = document.createElement('p');
    p.className = 'field-error';
    p.id = input.id + '-hint';
    input.after(p);
    input.setAttribute('aria-describedby', p.id);
  }
  p.textContent = text;
  input.setAttribute('aria-invalid', text ? 'true' : 'false');
}

function initStorage() {
  const form = $('#s3-form');
  const check = (input) => {
    const hint = s3Hints[input.name];
    if (hint) fieldError(input, input.checkValidity() ? '' : hint);
    return input.checkValidity();
  };
  // A shown error clears as soon as the field is right (while typing, so nothing moves
  // under a click on the button); errors appear only on submit.
  for (const input of $$('input', form)) {
    input.addEventListener('input', () => { if (input.getAttribute('aria-invalid') === 'true') check(input); });
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    say($('#s3-error'), '');
    const bad = $$('input', form).filter((i) => !check(i));
    if (bad.length) { bad[0].focus(); return; }
    const s3 = {
      endpoint: form.endpoint.value.trim(),
      region: form.region.value.trim(),
      bucket: form.bucket.value.trim(),
      access_key_id: form.access_key_id.value.trim(),
      secret_access_key: form.secret_access_key.value,
      path_style: form.path_style.checked,
    };
    if (form.prefix.value.trim()) s3.prefix = form.prefix.value.trim();
    try {
      await api('POST', '/storage-profiles', { name: form.name.value.trim(), s3 });
      location.reload();
    } catch (error) {
      say($('#s3-error'), error.message);
    }
  });
  const folder = $('#folder-form');
  folder?.addEventListener('submit', async (e) => {
    e.preventDefault();
    say($('#folder-error'), '');
    const body = { name: folder.name.value.trim(), kind: 'folder', path: folder.path.value.trim() };
    try {
      await api('POST', '/storage-profiles', body);
      location.reload();
    } catch (error) {
      say($('#folder-error'), error.message);
    }
  });
  const drive = $('#drive-form');
  drive?.addEventListener('submit', async (e) => {
    e.preventDefault();
    // Back to this page afterwards, which then says how it went.
    const body = { name: drive.name.value.trim(), folder_id: drive.folder_id.value.trim() || 'root', return_to: '/storage' };
    try {
      const started = await api('POST', '/storage-profiles/google-drive/connect', body);
      location.assign(started.authorize_url);
    } catch (error) {
      say($('#drive-error'), error.message);
    }
  });
  document.addEventListener('click', async (e) => {
    const test = e.target.closest('button[data-test]');
    const remove = e.target.closest('button[data-remove]');
    const b = test || remove;
    if (!b) return;
    const out = $('.result', b.closest('td'));
    say(out, test ? 'Testing…' : '');
    try {
      if (test) {
        await api('POST', `/storage-profiles/${b.dataset.test}/test`);
        say(out, 'Works.');
      } else {
        if (!confirm(`Delete the storage profile “${b.dataset.name}”? Files already delivered stay where they are.`)) return;
        await api('DELETE', `/storage-profiles/${b.dataset.remove}`);
        b.closest('tr').remove();
      }
    } catch (error) {
      say(out, error.message);
    }
  });
}

// ---- admin ----

function initAdmin() {
  document.addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-save]');
    if (!b) return;
    const tr = b.closest('tr');
    const out = $('.result', tr);
    const quotas = {};
    for (const f of ['active_jobs', 'job_bytes', 'stored_bytes', 'seeding_jobs']) {
      const v = $(`input[name="${f}"]`, tr).value;
      if (v !== '') quotas[f] = Number(v);
    }
    const body = {
      role: $('select[name="role"]', tr).value,
      disabled: $('input[name="disabled"]', tr).checked,
      quotas,
    };
    say(out, '');
    try {
      await api('PATCH', `/admin/users/${b.dataset.save}`, body);
      say(out, 'Saved.');
    } catch (error) {
      say(out, error.message);
    }
  });
}

const pages = {
  login: initLogin,
  setup: initSetup,
  jobs: initJobs,
  job: initJob,
  add: initAdd,
  account: initAccount,
  storage: initStorage,
  admin: initAdmin,
};

pages[document.body.dataset.page]?.();
