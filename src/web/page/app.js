/* radraft's review page: one file, no framework, no build step.
 *
 * The page talks only to the JSON API of docs/web-api.md. The Content-Security-Policy allows
 * no inline script or style, so every handler is attached here and every look is a class in
 * app.css (element.style is used only for the image's geometry, which CSP allows).
 *
 * Views are chosen by location.hash (#/queue, #/item/ID, #/users), so the browser's back
 * button works and a study page can be reloaded. */
'use strict';

(function () {
  // The vocabulary, in the order of the report and of the keyboard mapping.
  const FINDINGS = ['Atelectasis', 'Cardiomegaly', 'Effusion', 'Infiltration', 'Mass',
    'Nodule', 'Pneumonia', 'Pneumothorax', 'Consolidation', 'Edema', 'Emphysema',
    'Fibrosis', 'Pleural_Thickening', 'Hernia'];
  // Keys 1-9 for the first nine; letters for the rest, picked to be mnemonic and to stay
  // clear of the navigation keys (j k n p s r e v ?).
  const FINDING_KEYS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', 'd', 'm', 'f', 't', 'h'];
  const STATES = ['present', 'uncertain', 'absent'];
  const STATE_ORDER = { draft: 0, in_review: 1, signed: 2, rejected: 3, superseded: 4 };
  // Window presets in the image's 0..1 display range; null = the server's default (the
  // DICOM's VOI or percentiles).
  const PRESETS = {
    default: null,
    lung: { center: 0.40, window: 0.70 },
    mediastinum: { center: 0.62, window: 0.38 },
  };
  const PRESET_NAMES = Object.keys(PRESETS);
  const POLL_MS = 10000;

  const S = {
    me: null,             // {user, display_name, role, csrf}
    items: [],            // the last queue's summaries
    counts: {},
    order: [],            // ids of the worklist as shown (for n/p and j/k)
    selected: null,       // the selected id in the worklist
    sort: { key: 'priority', dir: 1 },
    item: null,           // the open ITEM
    set: {},              // findings toggled on the page but not saved: {name: state}
    image: null,          // viewer state, see resetView()
    pollTimer: null,
    busy: false,          // an action is in flight: ignore repeats
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const show = (e, on) => e.classList.toggle('hidden', !on);

  /* ---- API ---- */

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const opt = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (method === 'POST') {
      opt.headers['Content-Type'] = 'application/json';
      if (S.me && S.me.csrf) opt.headers['X-CSRF-Token'] = S.me.csrf;
      opt.body = JSON.stringify(body || {});
    }
    let r;
    try {
      r = await fetch(path, opt);
    } catch (e) {
      throw new ApiError(0, 'the server cannot be reached');
    }
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (r.status === 401 && path !== '/api/login' && path !== '/api/me') {
      loggedOut('Your session has ended; please log in again.');
    }
    if (!r.ok) {
      const msg = data && data.error ? data.error : `HTTP ${r.status} ${r.statusText}`;
      throw new ApiError(r.status, msg);
    }
    return data;
  }

  const itemPath = (id) => `/api/queue/${encodeURIComponent(id)}`;

  /* ---- messages ---- */

  function showError(e) {
    const msg = e instanceof ApiError && e.status ? `${e.message} (${e.status})` : String(e.message || e);
    $('error-text').textContent = msg;
    show($('error'), true);
  }
  function clearError() { show($('error'), false); }
  let noticeTimer = null;
  function notice(msg) {
    const n = $('notice');
    n.textContent = msg;
    show(n, true);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => show(n, false), 4000);
  }

  /* ---- formatting ---- */

  // created_at and history times may come as epoch seconds or as ISO text.
  function toDate(v) {
    if (v === null || v === undefined || v === '') return null;
    if (typeof v === 'number') return new Date(v > 1e12 ? v : v * 1000);
    const d = new Date(v);
    return isNaN(d) ? null : d;
  }
  function fmtTime(v) {
    const d = toDate(v);
    if (!d) return v ? String(v) : '';
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  }
  function fmtAge(v) {
    const d = toDate(v);
    if (!d) return '';
    const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d`;
  }
  function fmtDicomDate(v) {
    return /^\d{8}$/.test(v || '') ? `${v.slice(0, 4)}-${v.slice(4, 6)}-${v.slice(6)}` : (v || '');
  }
  // A DICOM person name "Family^Given^Middle" reads "Family, Given Middle".
  function fmtPersonName(v) {
    if (!v) return '';
    const parts = String(v).split('^');
    const rest = parts.slice(1).filter(Boolean).join(' ');
    return rest ? `${parts[0]}, ${rest}` : parts[0];
  }
  const stateLabel = (s) => String(s || '').replace('_', ' ');
  const assignee = (it) => it.signed_by || it.claimed_by || '';

  /* ---- session ---- */

  async function boot() {
    wire();
    try {
      S.me = await api('GET', '/api/me');
      loggedIn();
    } catch (e) {
      loggedOut();
    }
  }

  function loggedIn() {
    $('me').textContent = `${fmtPersonName(S.me.display_name) || S.me.user} · ${S.me.role}`;
    show($('bar'), true);
    show($('nav-users'), S.me.role === 'admin');
    startPolling();
    // The worklist's order is also what n/p follow on a study page opened by its address.
    if (/^#\/item\//.test(location.hash)) refreshQueue();
    route();
  }

  function loggedOut(message) {
    S.me = null;
    S.item = null;
    stopPolling();
    show($('bar'), false);
    showView('login');
    $('login-error').textContent = message || '';
    $('login-password').value = '';
    $('login-user').focus();
  }

  async function login(ev) {
    ev.preventDefault();
    $('login-error').textContent = '';
    try {
      S.me = await api('POST', '/api/login', {
        user: $('login-user').value.trim(), password: $('login-password').value });
      $('login-password').value = '';
      clearError();
      if (!location.hash || location.hash === '#/login') location.hash = '#/queue';
      loggedIn();
    } catch (e) {
      $('login-error').textContent = e.message;
    }
  }

  async function logout() {
    try { await api('POST', '/api/logout', {}); } catch (e) { /* the session is gone anyway */ }
    location.hash = '#/queue';
    loggedOut('You have logged out.');
  }

  /* ---- routing ---- */

  function showView(name) {
    for (const v of ['login', 'queue', 'study', 'users']) show($(`view-${v}`), v === name);
    $('nav-queue').classList.toggle('current', name === 'queue');
    $('nav-users').classList.toggle('current', name === 'users');
    document.body.dataset.view = name;
  }

  function currentView() { return document.body.dataset.view || ''; }

  function route() {
    if (!S.me) return;
    closeDialogs();
    const h = location.hash;
    const m = /^#\/item\/(\d+)$/.exec(h);
    if (m) {
      openItem(m[1]);
    } else if (h === '#/users' && S.me.role === 'admin') {
      showView('users');
      loadUsers();
    } else {
      S.item = null;
      showView('queue');
      renderQueue();
      refreshQueue();
    }
  }

  /* ---- worklist ---- */

  function startPolling() {
    stopPolling();
    S.pollTimer = setInterval(refreshQueue, POLL_MS);
  }
  function stopPolling() {
    if (S.pollTimer) clearInterval(S.pollTimer);
    S.pollTimer = null;
  }

  async function refreshQueue() {
    if (!S.me) return;
    try {
      const q = await api('GET', '/api/queue?sort=priority&limit=1000');
      S.items = Array.isArray(q.items) ? q.items : [];
      S.counts = q.counts || {};
      $('refreshed').textContent = `Last refreshed ${fmtTime(new Date())}.`;
      renderCounts();
      renderQueue();
      if (currentView() === 'study' && S.item) renderNav();
    } catch (e) {
      if (e.status !== 401) showError(e);
    }
  }

  function renderCounts() {
    const box = $('counts');
    box.textContent = '';
    const bar = $('bar-counts');
    bar.textContent = '';
    for (const st of Object.keys(STATE_ORDER)) {
      const n = S.counts[st] || 0;
      const b = el('button', `count state-${st}`);
      b.type = 'button';
      b.dataset.state = st;
      b.append(el('span', 'count-n', n), el('span', 'count-label', stateLabel(st)));
      b.addEventListener('click', () => { $('f-state').value = st; renderQueue(); });
      box.append(b);
    }
    const open = (S.counts.draft || 0) + (S.counts.in_review || 0);
    const urgent = S.items.filter((i) => i.priority === 'urgent' &&
      (i.state === 'draft' || i.state === 'in_review')).length;
    bar.textContent = `${open} open` + (urgent ? ` · ${urgent} urgent` : '');
  }

  function filteredItems() {
    const st = $('f-state').value;
    const pr = $('f-priority').value;
    const who = $('f-assignee').value;
    let list = S.items.filter((it) => {
      if (st === '' && !(it.state === 'draft' || it.state === 'in_review')) return false;
      if (st && st !== 'all' && it.state !== st) return false;
      if (pr && it.priority !== pr) return false;
      if (who === '-' && assignee(it)) return false;
      if (who && who !== '-' && it.claimed_by !== who && it.signed_by !== who) return false;
      return true;
    });
    const age = (it) => { const d = toDate(it.created_at); return d ? d.getTime() : 0; };
    const urgentFirst = (a, b) => (a.priority === 'urgent' ? 0 : 1) - (b.priority === 'urgent' ? 0 : 1);
    const key = S.sort.key;
    const dir = S.sort.dir;
    const cmp = {
      priority: (a, b) => dir * urgentFirst(a, b) || age(a) - age(b),
      age: (a, b) => dir * (age(a) - age(b)),
      id: (a, b) => dir * (Number(a.id) - Number(b.id)),
      state: (a, b) => dir * (STATE_ORDER[a.state] - STATE_ORDER[b.state]) || urgentFirst(a, b) || age(a) - age(b),
      study_date: (a, b) => dir * String(a.study_date || '').localeCompare(String(b.study_date || '')),
      assignee: (a, b) => dir * assignee(a).localeCompare(assignee(b)) || urgentFirst(a, b),
    }[key] || (() => 0);
    list = list.slice().sort((a, b) => cmp(a, b) || Number(a.id) - Number(b.id));
    return list;
  }

  function renderAssignees() {
    const sel = $('f-assignee');
    const cur = sel.value;
    const names = new Set();
    for (const it of S.items) {
      if (it.claimed_by) names.add(it.claimed_by);
      if (it.signed_by) names.add(it.signed_by);
    }
    sel.textContent = '';
    const opt = (v, t) => { const o = el('option', null, t); o.value = v; sel.append(o); };
    opt('', 'anyone');
    opt('-', 'nobody (unclaimed)');
    for (const n of [...names].sort()) opt(n, n === (S.me && S.me.user) ? `${n} (me)` : n);
    sel.value = [...sel.options].some((o) => o.value === cur) ? cur : '';
  }

  function renderQueue() {
    renderAssignees();
    const list = filteredItems();
    S.order = list.map((it) => String(it.id));
    if (!S.order.includes(S.selected)) S.selected = S.order[0] || null;
    const body = $('worklist-body');
    body.textContent = '';
    for (const it of list) {
      const tr = el('tr', `row state-${it.state}` + (it.priority === 'urgent' ? ' urgent' : ''));
      tr.dataset.id = it.id;
      const pri = el('td');
      pri.append(el('span', `badge ${it.priority === 'urgent' ? 'urgent' : 'routine'}`, it.priority));
      const st = el('td');
      st.append(el('span', `badge state state-${it.state}`, stateLabel(it.state)));
      const who = [];
      if (it.claimed_by) who.push(`claimed: ${it.claimed_by}`);
      if (it.signed_by) who.push(`signed: ${it.signed_by}`);
      tr.append(pri, el('td', 'num', `#${it.id}`), st, el('td', null, fmtDicomDate(it.study_date)),
        el('td', null, it.modality || ''), el('td', null, fmtAge(it.created_at)),
        el('td', null, who.join(' · ')));
      tr.addEventListener('click', () => { S.selected = String(it.id); markSelected(); });
      tr.addEventListener('dblclick', () => { location.hash = `#/item/${it.id}`; });
      body.append(tr);
    }
    show($('worklist-empty'), list.length === 0);
    for (const th of document.querySelectorAll('#worklist th[data-sort]')) {
      th.classList.toggle('sorted', th.dataset.sort === S.sort.key);
      th.classList.toggle('desc', th.dataset.sort === S.sort.key && S.sort.dir < 0);
    }
    markSelected();
  }

  function markSelected() {
    for (const tr of $('worklist-body').children) {
      const on = tr.dataset.id === S.selected;
      tr.classList.toggle('selected', on);
      if (on) tr.setAttribute('aria-selected', 'true'); else tr.removeAttribute('aria-selected');
    }
  }

  function moveSelection(d) {
    if (!S.order.length) return;
    let i = S.order.indexOf(S.selected);
    i = Math.min(S.order.length - 1, Math.max(0, i + d));
    S.selected = S.order[i];
    markSelected();
    const tr = $('worklist-body').children[i];
    if (tr) tr.scrollIntoView({ block: 'nearest' });
  }

  function setSort(key) {
    if (S.sort.key === key) S.sort.dir = -S.sort.dir;
    else S.sort = { key, dir: 1 };
    const sel = $('f-sort');
    sel.value = key === 'age' ? (S.sort.dir > 0 ? 'age' : 'age-desc') :
      ([...sel.options].some((o) => o.value === key) ? key : sel.value);
    renderQueue();
  }

  /* ---- the study page ---- */

  async function openItem(id) {
    showView('study');
    clearError();
    if (!S.item || String(S.item.id) !== String(id)) {
      S.set = {};
      $('sign-result').textContent = '';
      show($('sign-result'), false);
      resetView(true);
    }
    try {
      const item = await api('GET', itemPath(id));
      showItem(item, true);
    } catch (e) {
      showError(e);
    }
  }

  // Shows ITEM; fresh = replace the text areas (a newly opened or acted-on item).
  function showItem(item, fresh) {
    // findings as {name: {...}}; a list of {name, ...} is accepted too.
    if (Array.isArray(item.findings)) {
      item.findings = Object.fromEntries(item.findings.map((f) => [f.name || f.finding, f]));
    }
    const switched = !S.item || String(S.item.id) !== String(item.id);
    S.item = item;
    S.selected = String(item.id);
    const p = item.patient || {};
    $('p-name').textContent = fmtPersonName(p.name) || '(no name)';
    $('p-id').textContent = p.id || '';
    $('p-sex').textContent = p.sex || '';
    $('p-birth').textContent = fmtDicomDate(p.birth_date);
    $('p-date').textContent = fmtDicomDate(item.study_date);
    const pri = $('s-priority');
    pri.textContent = item.priority || '';
    pri.className = `badge ${item.priority === 'urgent' ? 'urgent' : 'routine'}`;
    const st = $('s-state');
    st.textContent = stateLabel(item.state);
    st.className = `badge state state-${item.state}`;
    st.dataset.state = item.state;
    $('s-item').textContent = `item #${item.id}`;
    document.title = `#${item.id} ${stateLabel(item.state)} · radraft`;
    if (fresh) {
      $('t-findings').value = savedText('findings');
      $('t-impression').value = savedText('impression');
    }
    renderFindings();
    renderActions();
    renderDiff();
    renderNeighbours();
    renderHistory();
    if (switched) {
      renderHeatChoices();
      renderImages();
    }
  }

  // The text as last saved: the edited one if any, else the draft's.
  function savedText(which) {
    const fin = S.item[`final_${which}_text`];
    return fin !== null && fin !== undefined ? fin : (S.item[`${which}_text`] || '');
  }

  function savedState(name) {
    const fs = S.item.final_states;
    if (fs && fs[name]) return fs[name];
    const f = (S.item.findings || {})[name];
    return f ? f.state : 'absent';
  }
  const shownState = (name) => S.set[name] || savedState(name);

  function isDirty() {
    return Object.keys(S.set).length > 0 ||
      $('t-findings').value !== savedText('findings') ||
      $('t-impression').value !== savedText('impression');
  }

  function renderFindings() {
    const body = $('findings-body');
    body.textContent = '';
    const editable = canEdit();
    FINDINGS.forEach((name, i) => {
      const f = (S.item.findings || {})[name] || {};
      const cur = shownState(name);
      const tr = el('tr', `finding is-${cur}` + (S.set[name] ? ' changed' : ''));
      tr.dataset.finding = name;
      const score = typeof f.score === 'number' ? f.score : null;
      const sc = el('td', 'score');
      const meter = el('span', 'meter');
      const fill = el('span', 'meter-fill');
      if (score !== null) fill.style.width = `${Math.round(Math.max(0, Math.min(1, score)) * 100)}%`;
      meter.append(fill);
      sc.append(meter, el('span', 'num', score !== null ? score.toFixed(2) : '–'));
      const toggles = el('td', 'toggles');
      const group = el('span', 'seg');
      group.setAttribute('role', 'radiogroup');
      group.setAttribute('aria-label', name);
      for (const s of STATES) {
        const b = el('button', `seg-${s}` + (cur === s ? ' on' : ''), s);
        b.type = 'button';
        b.disabled = !editable;
        b.setAttribute('role', 'radio');
        b.setAttribute('aria-checked', cur === s ? 'true' : 'false');
        b.dataset.state = s;
        b.addEventListener('click', () => setFinding(name, s));
        group.append(b);
      }
      toggles.append(group);
      const label = el('td', 'fname', name.replace('_', ' '));
      if (f.state && f.state !== cur) label.append(el('span', 'draft-was', `draft: ${f.state}`));
      tr.append(el('td', 'key', FINDING_KEYS[i]), label, sc, toggles);
      body.append(tr);
    });
  }

  function setFinding(name, state) {
    if (!canEdit()) return;
    if (state === savedState(name)) delete S.set[name];
    else S.set[name] = state;
    renderFindings();
    renderDirty();
  }

  // A key press cycles present -> uncertain -> absent -> present.
  function cycleFinding(i) {
    const name = FINDINGS[i];
    const cur = shownState(name);
    setFinding(name, STATES[(STATES.indexOf(cur) + 1) % STATES.length]);
  }

  const mine = () => S.item && S.me && S.item.claimed_by === S.me.user;
  const mayAct = () => S.me && (S.me.role === 'radiologist' || S.me.role === 'admin');
  function canEdit() {
    if (!S.item || !mayAct()) return false;
    const st = S.item.state;
    return st === 'draft' || st === 'signed' || (st === 'in_review' && mine());
  }

  function renderActions() {
    const st = S.item.state;
    const act = mayAct();
    show($('a-claim'), act && st === 'draft');
    show($('a-save'), act && canEdit());
    $('a-save').textContent = st === 'signed' ? 'Amend (sign again)' : 'Save';
    show($('a-sign'), act && (st === 'draft' || (st === 'in_review' && mine())));
    show($('a-reject'), act && (st === 'draft' || (st === 'in_review' && mine())));
    show($('a-release'), act && st === 'in_review' && mine());
    const ro = !canEdit();
    $('t-findings').readOnly = ro;
    $('t-impression').readOnly = ro;
    renderNav();
    renderDirty();
  }

  function renderNav() {
    const i = S.order.indexOf(String(S.item.id));
    $('a-prev').disabled = i <= 0;
    $('a-next').disabled = i < 0 ? S.order.length === 0 : i >= S.order.length - 1;
  }

  function renderDirty() {
    const n = Object.keys(S.set).length;
    const t = ($('t-findings').value !== savedText('findings') ? 1 : 0) +
      ($('t-impression').value !== savedText('impression') ? 1 : 0);
    $('dirty').textContent = n || t
      ? `Unsaved: ${n ? `${n} finding${n > 1 ? 's' : ''}` : ''}${n && t ? ', ' : ''}${t ? 'text' : ''}.`
      : (S.item && S.item.final_states ? 'Edited; saved.' : 'Unchanged draft.');
    $('dirty').classList.toggle('warn', Boolean(n || t));
  }

  function renderNeighbours() {
    const body = $('neighbours-body');
    body.textContent = '';
    const ns = S.item.neighbours || [];
    for (const n of ns) {
      const tr = el('tr');
      // What the neighbour's report said: its present and uncertain findings.
      const said = Object.entries(n.states || {}).map(([f, st]) =>
        st === 'uncertain' ? `${f.replace('_', ' ')}?` : f.replace('_', ' '));
      tr.append(el('td', 'num', typeof n.similarity === 'number' ? n.similarity.toFixed(3) : n.similarity),
        el('td', n.source === 'signed' ? 'signed' : 'muted', n.source || ''),
        el('td', '', said.length ? said.join(', ') : (n.states ? 'normal' : '')),
        el('td', 'uid', n.study_uid));
      body.append(tr);
    }
    if (!ns.length) {
      const tr = el('tr');
      const td = el('td', 'muted', 'none');
      td.colSpan = 4;
      tr.append(td);
      body.append(tr);
    }
  }

  function renderHistory() {
    const body = $('history-body');
    body.textContent = '';
    for (const h of S.item.history || []) {
      const tr = el('tr');
      tr.append(el('td', 'nowrap', fmtTime(h.at)), el('td', null, h.user || '(radraft)'),
        el('td', null, h.action), el('td', 'detail', h.detail || ''));
      body.append(tr);
    }
  }

  /* ---- word diff: the longest common subsequence of words ---- */

  function tokens(s) { return String(s || '').split(/(\s+)/).filter((t) => t !== ''); }

  // Returns [{t, op}] for both sides: op '=' common, '-' only in a, '+' only in b. Texts
  // are short (a report), so the O(n*m) table is fine; past 1500 words each we mark the
  // whole text instead of using a few hundred MB.
  function diffWords(a, b) {
    const A = tokens(a);
    const B = tokens(b);
    if (A.length * B.length > 1500 * 1500) {
      return { left: A.map((t) => ({ t, op: '-' })), right: B.map((t) => ({ t, op: '+' })) };
    }
    const n = A.length;
    const m = B.length;
    const L = new Array(n + 1);
    for (let i = 0; i <= n; i++) L[i] = new Uint16Array(m + 1);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        L[i][j] = A[i] === B[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
      }
    }
    const left = [];
    const right = [];
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (A[i] === B[j]) { left.push({ t: A[i], op: '=' }); right.push({ t: B[j], op: '=' }); i++; j++; }
      else if (L[i + 1][j] >= L[i][j + 1]) left.push({ t: A[i++], op: '-' });
      else right.push({ t: B[j++], op: '+' });
    }
    while (i < n) left.push({ t: A[i++], op: '-' });
    while (j < m) right.push({ t: B[j++], op: '+' });
    return { left, right };
  }

  function renderDiffSide(box, parts) {
    box.textContent = '';
    for (const p of parts) {
      // Whitespace stays plain so that a marked run reads as words, not as a bar.
      if (p.op === '=' || /^\s+$/.test(p.t)) box.append(document.createTextNode(p.t));
      else box.append(el(p.op === '-' ? 'del' : 'ins', null, p.t));
    }
  }

  function renderDiff() {
    if (!S.item) return;
    const draft = `FINDINGS: ${S.item.findings_text || ''}\n\nIMPRESSION: ${S.item.impression_text || ''}`;
    const edited = `FINDINGS: ${$('t-findings').value}\n\nIMPRESSION: ${$('t-impression').value}`;
    const d = diffWords(draft, edited);
    renderDiffSide($('diff-old'), d.left);
    renderDiffSide($('diff-new'), d.right);
  }

  /* ---- actions ---- */

  // Runs one POST on the open item and shows the item it returns. Repeats are ignored while
  // one is in flight (a double Enter must not sign twice).
  async function act(verb, body, okMessage) {
    if (S.busy || !S.item) return null;
    S.busy = true;
    clearError();
    try {
      const item = await api('POST', `${itemPath(S.item.id)}/${verb}`, body || {});
      if (verb !== 'claim') S.set = {};
      showItem(item, verb !== 'claim');
      if (okMessage) notice(okMessage);
      refreshQueue();
      return item;
    } catch (e) {
      showError(e);
      return null;
    } finally {
      S.busy = false;
    }
  }

  function editBody() {
    const body = {};
    if ($('t-findings').value !== savedText('findings')) body.findings_text = $('t-findings').value;
    if ($('t-impression').value !== savedText('impression')) body.impression_text = $('t-impression').value;
    if (Object.keys(S.set).length) body.set = Object.assign({}, S.set);
    return body;
  }

  async function save() {
    if (!S.item || !canEdit()) return false;
    if (!isDirty()) { notice('Nothing to save.'); return true; }
    const body = editBody();
    if (S.item.state === 'signed') return Boolean(await act('amend', body, 'Amended: a new signed version.'));
    // An edit needs the claim; a draft nobody holds is claimed on the way.
    if (S.item.state === 'draft') {
      const keepSet = S.set;
      if (!(await act('claim', {}))) return false;
      S.set = keepSet;
    }
    return Boolean(await act('edit', body, 'Saved.'));
  }

  async function signNow() {
    closeDialogs();
    // Unsaved changes are saved first, so what is signed is what is on the screen.
    if (isDirty() && !(await save())) return;
    const item = await act('sign', {});
    if (item && item.signed) {
      const r = $('sign-result');
      r.textContent = `Signed version ${item.signed.version}; SR ${item.signed.sop_instance_uid}` +
        (item.signed.deliveries !== undefined ? `; deliveries queued: ${Array.isArray(item.signed.deliveries) ? item.signed.deliveries.length : item.signed.deliveries}` : '');
      r.dataset.sop = item.signed.sop_instance_uid || '';
      show(r, true);
      notice('Signed.');
    }
  }

  function askSign() {
    if (!S.item || $('a-sign').classList.contains('hidden')) return;
    $('dlg-sign-text').textContent = isDirty()
      ? `Item #${S.item.id}: your unsaved changes are saved, then the report is signed as ${fmtPersonName(S.me.display_name)}.`
      : `Item #${S.item.id}: the report is signed as shown, as ${fmtPersonName(S.me.display_name)}.`;
    openDialog('dlg-sign');
    $('dlg-sign-ok').focus();
  }

  function askReject() {
    if (!S.item || $('a-reject').classList.contains('hidden')) return;
    $('reject-note').value = '';
    openDialog('dlg-reject');
    $('reject-reason').focus();
  }

  async function reject(ev) {
    if (ev) ev.preventDefault();
    const reason = $('reject-reason').value;
    const note = $('reject-note').value.trim();
    if (reason === 'other' && !note) {
      showError(new Error('The reason "other" needs a note.'));
      $('reject-note').focus();
      return;
    }
    closeDialogs();
    const body = { reason };
    if (note) body.note = note;
    await act('reject', body, 'Rejected.');
  }

  function goRelative(d) {
    if (!S.item) return;
    let i = S.order.indexOf(String(S.item.id));
    if (i < 0) i = d > 0 ? -1 : S.order.length;
    const next = S.order[i + d];
    if (next) location.hash = `#/item/${next}`;
    else notice(d > 0 ? 'This is the last item of the worklist.' : 'This is the first item of the worklist.');
  }

  /* ---- the image viewer ---- */

  function resetView(newItem) {
    S.image = {
      index: newItem || !S.image ? null : S.image.index,  // null: the frontal (server default)
      wl: null,            // {center, window} or null for the server's default
      preset: 'default',
      zoom: 1, tx: 0, ty: 0,
      aspect: S.image && !newItem ? S.image.aspect : 0.86,
      natural: null,       // [w, h] of the loaded PNG
      seq: 0,              // guards against an older PNG arriving after a newer one
      heat: newItem || !S.image ? '' : S.image.heat,  // the finding whose heat map shows, '' none
      heatSeq: 0,
    };
  }

  /* ---- heat maps: where the model found the evidence, over the frontal image ---- */

  // The findings the draft places (a side in the text) and keeps a heat map of.
  function heatFindings() {
    const fs = (S.item && S.item.findings) || {};
    return FINDINGS.filter((name) => fs[name] && fs[name].heatmap);
  }

  function renderHeatChoices() {
    const sel = $('heat-select');
    const names = heatFindings();
    sel.textContent = '';
    sel.append(el('option', null, 'off'));
    sel.options[0].value = '';
    for (const name of names) {
      const f = S.item.findings[name];
      const where = [f.side, f.zone].filter(Boolean).join(' ');
      const o = el('option', null, where ? `${name} (${where})` : name);
      o.value = name;
      sel.append(o);
    }
    if (!names.includes(S.image.heat)) S.image.heat = '';
    sel.value = S.image.heat;
    show($('heat-wrap'), names.length > 0);
  }

  function frontalShown() {
    const im = ((S.item && S.item.images) || []).find((i) => i.index === S.image.index);
    return !!(im && im.frontal);
  }

  function loadHeat() {
    const hi = $('heat-image');
    const seq = ++S.image.heatSeq;
    if (!S.item || !S.image.heat || !frontalShown()) {
      show(hi, false);
      return;
    }
    const q = new URLSearchParams({ finding: S.image.heat, width: String(wantedWidth()) });
    const pre = new Image();
    pre.onload = () => {
      if (seq !== S.image.heatSeq) return;
      hi.src = pre.src;
      hi.alt = `Heat map of ${S.image.heat}`;
      show(hi, true);
      layoutImage();
    };
    pre.onerror = () => { if (seq === S.image.heatSeq) show(hi, false); };
    pre.src = `${itemPath(S.item.id)}/heatmap?${q}`;
  }

  function setHeat(name) {
    S.image.heat = name;
    $('heat-select').value = name;
    loadHeat();
  }

  function cycleHeat() {
    const names = [''].concat(heatFindings());
    if (names.length < 2) return;
    setHeat(names[(names.indexOf(S.image.heat) + 1) % names.length]);
  }

  function imageUrl(index, width, wl) {
    const q = new URLSearchParams();
    if (index !== null && index !== undefined) q.set('index', index);
    q.set('width', String(width));
    if (wl) {
      q.set('center', wl.center.toFixed(3));
      q.set('window', wl.window.toFixed(3));
    }
    return `${itemPath(S.item.id)}/image?${q}`;
  }

  function renderImages() {
    const thumbs = $('thumbs');
    thumbs.textContent = '';
    const imgs = S.item.images || [];
    const frontal = imgs.find((i) => i.frontal);
    if (S.image.index === null && frontal) S.image.index = frontal.index;
    for (const im of imgs) {
      const b = el('button', 'thumb' + (im.index === S.image.index ? ' on' : ''));
      b.type = 'button';
      b.dataset.index = im.index;
      b.title = `${im.view_position || 'image'} ${im.index}` + (im.frontal ? ' (frontal)' : '');
      const t = el('img');
      t.alt = b.title;
      t.src = imageUrl(im.index, 160, null);
      b.append(t, el('span', 'thumb-label', (im.view_position || `#${im.index}`) + (im.frontal ? ' ·F' : '')));
      b.addEventListener('click', () => selectImage(im.index));
      thumbs.append(b);
    }
    loadMain();
  }

  function selectImage(index) {
    S.image.index = index;
    S.image.zoom = 1;
    S.image.tx = 0;
    S.image.ty = 0;
    S.image.natural = null;
    for (const b of $('thumbs').children) b.classList.toggle('on', Number(b.dataset.index) === index);
    loadMain();
    loadHeat();
  }

  function cycleImage(d) {
    const imgs = (S.item && S.item.images) || [];
    if (imgs.length < 2) return;
    let i = imgs.findIndex((im) => im.index === S.image.index);
    i = (i + d + imgs.length) % imgs.length;
    selectImage(imgs[i].index);
  }

  // The PNG is requested at the size it is shown, in device pixels.
  function wantedWidth() {
    const st = $('stage');
    const dpr = window.devicePixelRatio || 1;
    const w = Math.min(st.clientWidth, st.clientHeight * S.image.aspect) * dpr;
    return Math.max(64, Math.min(2048, Math.round(w || 1024)));
  }

  function loadMain() {
    if (!S.item) return;
    const seq = ++S.image.seq;
    const url = imageUrl(S.image.index, wantedWidth(), S.image.wl);
    // Loaded off screen first, so the old picture stays until the new one is there.
    const pre = new Image();
    pre.onload = () => {
      if (seq !== S.image.seq) return;
      const img = $('main-image');
      img.src = pre.src;
      S.image.natural = [pre.naturalWidth, pre.naturalHeight];
      if (pre.naturalWidth) S.image.aspect = pre.naturalWidth / pre.naturalHeight;
      show($('stage-msg'), false);
      layoutImage();
      if (S.image.heat && $('heat-image').classList.contains('hidden')) loadHeat();
    };
    pre.onerror = () => {
      if (seq !== S.image.seq) return;
      $('stage-msg').textContent = 'The image could not be loaded.';
      show($('stage-msg'), true);
    };
    pre.src = url;
    renderReadout();
  }

  // Fits the image into the stage, then applies zoom and pan as one CSS transform.
  function layoutImage() {
    const img = $('main-image');
    const st = $('stage');
    if (!S.image || !S.image.natural) return;
    const [nw, nh] = S.image.natural;
    const f = Math.min(st.clientWidth / nw, st.clientHeight / nh);
    const w = nw * f;
    const h = nh * f;
    img.style.width = `${w}px`;
    img.style.height = `${h}px`;
    const x = (st.clientWidth - w) / 2 + S.image.tx;
    const y = (st.clientHeight - h) / 2 + S.image.ty;
    img.style.transformOrigin = `${w / 2}px ${h / 2}px`;
    img.style.transform = `translate(${x}px, ${y}px) scale(${S.image.zoom})`;
    // The heat map covers the frontal image exactly: same box, same transform.
    const hi = $('heat-image');
    hi.style.width = img.style.width;
    hi.style.height = img.style.height;
    hi.style.transformOrigin = img.style.transformOrigin;
    hi.style.transform = img.style.transform;
  }

  function renderReadout() {
    const wl = S.image.wl;
    $('wl-readout').textContent = (wl ? `C ${wl.center.toFixed(2)}  W ${wl.window.toFixed(2)}` : 'C/W default') +
      `   ${Math.round(S.image.zoom * 100)}%`;
    for (const b of document.querySelectorAll('[data-preset]')) b.classList.toggle('on', b.dataset.preset === S.image.preset);
  }

  function applyPreset(name) {
    S.image.preset = name;
    S.image.wl = PRESETS[name] ? Object.assign({}, PRESETS[name]) : null;
    loadMain();
  }

  function cyclePreset() {
    const i = PRESET_NAMES.indexOf(S.image.preset);
    applyPreset(PRESET_NAMES[(i + 1) % PRESET_NAMES.length]);
  }

  function resetImage() {
    S.image.zoom = 1;
    S.image.tx = 0;
    S.image.ty = 0;
    applyPreset('default');
    layoutImage();
  }

  let wlTimer = null;
  function requestWl() {
    renderReadout();
    clearTimeout(wlTimer);
    wlTimer = setTimeout(loadMain, 120);  // one PNG per pause, not one per mouse move
  }

  function wireViewer() {
    const st = $('stage');
    let drag = null;
    st.addEventListener('mousedown', (ev) => {
      if (!S.item) return;
      ev.preventDefault();
      const pan = ev.button === 1 || ev.shiftKey || ev.ctrlKey || ev.altKey || ev.metaKey;
      const wl = S.image.wl || { center: 0.5, window: 1.0 };
      drag = { pan, x: ev.clientX, y: ev.clientY, tx: S.image.tx, ty: S.image.ty, wl: Object.assign({}, wl) };
      st.classList.add(pan ? 'panning' : 'leveling');
    });
    window.addEventListener('mousemove', (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (drag.pan) {
        S.image.tx = drag.tx + dx;
        S.image.ty = drag.ty + dy;
        layoutImage();
        return;
      }
      // A drag across the whole stage spans the whole display range.
      const w = Math.max(0.01, Math.min(2, drag.wl.window + dx / st.clientWidth));
      const c = Math.max(0, Math.min(1, drag.wl.center - dy / st.clientHeight));
      S.image.wl = { center: c, window: w };
      S.image.preset = '';
      requestWl();
    });
    window.addEventListener('mouseup', () => {
      if (!drag) return;
      drag = null;
      st.classList.remove('panning', 'leveling');
    });
    st.addEventListener('auxclick', (ev) => ev.preventDefault());
    st.addEventListener('wheel', (ev) => {
      if (!S.image || !S.image.natural) return;
      ev.preventDefault();
      const old = S.image.zoom;
      const z = Math.max(0.5, Math.min(8, old * Math.exp(-ev.deltaY * 0.0015)));
      // Keep the point under the cursor where it is: shift the pan by how far that point
      // moves from the image's centre when the scale changes.
      const r = st.getBoundingClientRect();
      const cx = ev.clientX - r.left - st.clientWidth / 2 - S.image.tx;
      const cy = ev.clientY - r.top - st.clientHeight / 2 - S.image.ty;
      S.image.tx -= cx * (z / old - 1);
      S.image.ty -= cy * (z / old - 1);
      S.image.zoom = z;
      layoutImage();
      renderReadout();
    }, { passive: false });
    let resizeTimer = null;
    window.addEventListener('resize', () => {
      if (currentView() !== 'study') return;
      layoutImage();
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(loadMain, 300);
    });
    for (const b of document.querySelectorAll('[data-preset]')) {
      b.addEventListener('click', () => applyPreset(b.dataset.preset));
    }
    $('view-reset').addEventListener('click', resetImage);
    $('heat-select').addEventListener('change', (ev) => setHeat(ev.target.value));
  }

  /* ---- users (admins) ---- */

  async function loadUsers() {
    try {
      const users = await api('GET', '/api/users');
      const body = $('users-body');
      body.textContent = '';
      for (const u of users || []) {
        const tr = el('tr', u.disabled ? 'disabled' : '');
        const btd = el('td');
        if (u.name !== S.me.user) {
          const b = el('button', u.disabled ? '' : 'danger', u.disabled ? 'Enable' : 'Disable');
          b.type = 'button';
          b.addEventListener('click', async () => {
            try {
              await api('POST', `/api/users/${encodeURIComponent(u.name)}/${u.disabled ? 'enable' : 'disable'}`, {});
              notice(`${u.name} ${u.disabled ? 'enabled' : 'disabled'}.`);
              loadUsers();
            } catch (e) { showError(e); }
          });
          btd.append(b);
        }
        tr.append(el('td', null, u.name), el('td', null, fmtPersonName(u.display_name)),
          el('td', null, u.role), el('td', null, u.disabled ? 'disabled' : 'active'), btd);
        body.append(tr);
      }
    } catch (e) {
      showError(e);
    }
  }

  async function addUser(ev) {
    ev.preventDefault();
    clearError();
    try {
      await api('POST', '/api/users', {
        name: $('u-name').value.trim(), display_name: $('u-display').value.trim(),
        role: $('u-role').value, password: $('u-password').value });
      notice(`User ${$('u-name').value.trim()} added.`);
      $('user-form').reset();
      loadUsers();
    } catch (e) {
      showError(e);
    }
  }

  /* ---- dialogs and keys ---- */

  function openDialog(id) {
    closeDialogs();
    show($(id), true);
  }
  function openDialogId() {
    for (const id of ['dlg-sign', 'dlg-reject', 'dlg-help']) if (!$(id).classList.contains('hidden')) return id;
    return null;
  }
  function closeDialogs() {
    for (const id of ['dlg-sign', 'dlg-reject', 'dlg-help']) show($(id), false);
  }

  // The help lists what the handlers below do; keep the two together.
  const HELP = [
    ['?', 'this help'],
    ['Escape', 'close a dialog; leave a text field; back to the worklist'],
    ['j / ↓, k / ↑', 'worklist: move the selection'],
    ['Enter', 'worklist: open the selected item'],
    ['n / p', 'study: next / previous item of the worklist'],
    ['s, then Enter', 'study: sign (an unchanged draft: two keys)'],
    ['r', 'study: reject (reason and note)'],
    ['c', 'study: claim'],
    ['Ctrl+S', 'study: save the edits (also inside a text field)'],
    ['e', 'study: edit the findings text'],
    ['i', 'study: edit the impression text'],
    ['v', 'study: next window preset (default, lung, mediastinum)'],
    ['0', 'study: reset zoom, pan and window'],
    ['[ / ]', 'study: previous / next image of the study'],
    ['o', 'study: next heat map over the frontal image (off, then each placed finding)'],
  ];

  function renderHelp() {
    const keys = $('help-keys');
    for (const [k, what] of HELP) {
      const tr = el('tr');
      const td = el('td');
      td.append(el('kbd', null, k));
      tr.append(td, el('td', null, what));
      keys.append(tr);
    }
    const fk = $('help-findings');
    const head = el('tr');
    const th = el('th', null, 'Finding keys (present → uncertain → absent)');
    th.colSpan = 2;
    head.append(th);
    fk.append(head);
    FINDINGS.forEach((f, i) => {
      const tr = el('tr');
      const td = el('td');
      td.append(el('kbd', null, FINDING_KEYS[i]));
      tr.append(td, el('td', null, f.replace('_', ' ')));
      fk.append(tr);
    });
  }

  function isTyping(t) {
    if (!t || !t.tagName) return false;
    const tag = t.tagName;
    return tag === 'TEXTAREA' || tag === 'SELECT' || t.isContentEditable ||
      (tag === 'INPUT' && !['button', 'checkbox', 'radio', 'submit'].includes(t.type));
  }

  function onKey(ev) {
    if (!S.me) return;
    if (ev.altKey || ev.metaKey) return;
    const k = ev.key;
    const dlg = openDialogId();

    // Ctrl+S saves, even from a text area: the one chord we take from the browser.
    if (ev.ctrlKey && (k === 's' || k === 'S')) {
      if (currentView() === 'study' && !dlg) { ev.preventDefault(); save(); }
      return;
    }
    if (ev.ctrlKey) return;

    if (k === 'Escape') {
      ev.preventDefault();
      if (dlg) { closeDialogs(); return; }
      if (isTyping(ev.target)) { ev.target.blur(); return; }
      if (currentView() !== 'queue') location.hash = '#/queue';
      return;
    }
    if (dlg === 'dlg-sign') {
      if (k === 'Enter') { ev.preventDefault(); signNow(); }
      return;
    }
    if (dlg === 'dlg-reject') {
      if (k === 'Enter' && ev.target.tagName !== 'TEXTAREA') { ev.preventDefault(); reject(); }
      return;
    }
    if (dlg === 'dlg-help') {
      if (k === '?' || k === 'Enter') { ev.preventDefault(); closeDialogs(); }
      return;
    }
    if (isTyping(ev.target)) return;
    if (k === '?') { ev.preventDefault(); openDialog('dlg-help'); return; }

    const view = currentView();
    if (view === 'queue') {
      if (k === 'j' || k === 'ArrowDown') { ev.preventDefault(); moveSelection(1); }
      else if (k === 'k' || k === 'ArrowUp') { ev.preventDefault(); moveSelection(-1); }
      else if (k === 'Enter' && S.selected && ev.target.tagName !== 'BUTTON' && ev.target.tagName !== 'A') {
        ev.preventDefault();
        location.hash = `#/item/${S.selected}`;
      }
      return;
    }
    if (view !== 'study' || !S.item) return;
    const fi = FINDING_KEYS.indexOf(k);
    if (fi >= 0) { ev.preventDefault(); cycleFinding(fi); return; }
    const acts = {
      n: () => goRelative(1),
      p: () => goRelative(-1),
      s: askSign,
      r: askReject,
      c: () => { if (!$('a-claim').classList.contains('hidden')) act('claim', {}, 'Claimed.'); },
      e: () => $('t-findings').focus(),
      i: () => $('t-impression').focus(),
      v: cyclePreset,
      0: resetImage,
      '[': () => cycleImage(-1),
      ']': () => cycleImage(1),
      o: cycleHeat,
    };
    if (acts[k]) { ev.preventDefault(); acts[k](); }
  }

  /* ---- wiring ---- */

  function wire() {
    renderHelp();
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('error-close').addEventListener('click', clearError);
    $('help-button').addEventListener('click', () => openDialog('dlg-help'));
    $('help-close').addEventListener('click', closeDialogs);
    for (const id of ['f-state', 'f-priority', 'f-assignee']) $(id).addEventListener('change', renderQueue);
    $('f-sort').addEventListener('change', () => {
      const v = $('f-sort').value;
      S.sort = v === 'age-desc' ? { key: 'age', dir: -1 } : { key: v, dir: 1 };
      renderQueue();
    });
    for (const th of document.querySelectorAll('#worklist th[data-sort]')) {
      th.addEventListener('click', () => setSort(th.dataset.sort));
    }
    $('a-claim').addEventListener('click', () => act('claim', {}, 'Claimed.'));
    $('a-save').addEventListener('click', save);
    $('a-sign').addEventListener('click', askSign);
    $('a-reject').addEventListener('click', askReject);
    $('a-release').addEventListener('click', () => act('release', {}, 'Released.'));
    $('a-next').addEventListener('click', () => goRelative(1));
    $('a-prev').addEventListener('click', () => goRelative(-1));
    $('dlg-sign-ok').addEventListener('click', signNow);
    $('dlg-sign-cancel').addEventListener('click', closeDialogs);
    $('reject-form').addEventListener('submit', reject);
    $('reject-cancel').addEventListener('click', closeDialogs);
    $('user-form').addEventListener('submit', addUser);
    let diffTimer = null;
    for (const id of ['t-findings', 't-impression']) {
      $(id).addEventListener('input', () => {
        renderDirty();
        clearTimeout(diffTimer);
        diffTimer = setTimeout(renderDiff, 200);
      });
    }
    // A click on the dark backdrop closes a dialog, as Escape does.
    for (const id of ['dlg-sign', 'dlg-reject', 'dlg-help']) {
      $(id).addEventListener('mousedown', (ev) => { if (ev.target === $(id)) closeDialogs(); });
    }
    document.addEventListener('keydown', onKey);
    window.addEventListener('hashchange', route);
    wireViewer();
    resetView(true);
  }

  document.addEventListener('DOMContentLoaded', boot);
})();
