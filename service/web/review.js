// The orthotist's review page: the device over the limb in 3D, the checks,
// and the decision (approve for a print lab, or request a new version).
// Licensed under the Apache License, Version 2.0.
//
// The page holds no case data; everything comes from the API with the
// orthotist's key (Authorization: Bearer), kept in sessionStorage only.

import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';

const KEY_NAME = 'orthofit_key';
const LIMB_COLOUR = 0xd0d0d0;
const LIMB_OPACITY = 0.35;
const BACKGROUND = 0xf3f4f6;
// The camera looks from the front, medial side and a little above (y up).
const VIEW_DIRECTION = new THREE.Vector3(1.0, 0.55, 1.1).normalize();

const $ = (id) => document.getElementById(id);

const caseId = document.body.dataset.caseId || '';
const requestedVersion = (document.body.dataset.version || '').trim();

let review = null;   // the last review.json
let viewer = null;   // the three.js view, once made

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

class NeedKey extends Error {}

// ------------------------------------------------------------------ API

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_NAME) || '';
  } catch {
    return '';
  }
}

function casePath(suffix = '') {
  return `/cases/${encodeURIComponent(caseId)}${suffix}`;
}

function formatDetail(detail) {
  if (detail == null) return '';
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      if (d && typeof d === 'object' && 'msg' in d) {
        const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== 'body').join('.') : '';
        return where ? `${where}: ${d.msg}` : String(d.msg);
      }
      return typeof d === 'string' ? d : JSON.stringify(d);
    }).join('; ');
  }
  return JSON.stringify(detail);
}

async function errorDetail(response) {
  let text = '';
  try {
    text = await response.text();
    const body = JSON.parse(text);
    const detail = formatDetail(body && body.detail);
    if (detail) return detail;
  } catch {
    // not JSON: fall through to the text or the status
  }
  return text.trim().slice(0, 300) || `${response.status} ${response.statusText}`.trim();
}

// Fetch with the key; a missing or refused key asks for one (and throws NeedKey).
async function api(path, { method = 'GET', json, form, as = 'json' } = {}) {
  const key = apiKey();
  if (!key) throw new NeedKey('no API key');
  const headers = { Authorization: `Bearer ${key}`, Accept: as === 'json' ? 'application/json' : '*/*' };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;  // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: 'no-store', credentials: 'omit' });
  } catch (err) {
    throw new ApiError(0, `the service could not be reached (${err.message})`);
  }
  if (response.status === 401) {
    throw new NeedKey(await errorDetail(response));
  }
  if (!response.ok) throw new ApiError(response.status, await errorDetail(response));
  if (as === 'buffer') return response.arrayBuffer();
  return response.json();
}

// ------------------------------------------------------------------ key form

let afterKey = null;

function askForKey(message, then) {
  afterKey = then;
  $('key-message').textContent = message
    || 'Enter your orthotist API key. It is kept for this browser tab only.';
  $('key-panel').hidden = false;
  $('key-input').value = '';
  $('key-input').focus();
}

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = $('key-input').value.trim();
  if (!key) return;
  try {
    sessionStorage.setItem(KEY_NAME, key);
  } catch {
    showMessage('This browser does not allow the page to keep the key (sessionStorage).');
    return;
  }
  $('key-input').value = '';
  $('key-panel').hidden = true;
  const then = afterKey;
  afterKey = null;
  if (then) then();
});

$('change-key').addEventListener('click', () => {
  try {
    sessionStorage.removeItem(KEY_NAME);
  } catch {
    // nothing kept
  }
  askForKey('Enter the API key to use.', load);
});

// Handles an error of any call: a key problem asks for the key, then runs `retry`.
function handleError(err, retry, show = showMessage) {
  if (err instanceof NeedKey) {
    try {
      sessionStorage.removeItem(KEY_NAME);
    } catch {
      // nothing kept
    }
    const refused = err.message !== 'no API key';
    askForKey(refused ? `The key was refused (${err.message}). Enter a valid API key.` : '', retry);
    return;
  }
  if (err instanceof ApiError) {
    show(err.message);
    return;
  }
  show(`Something went wrong on this page: ${err && err.message ? err.message : err}`);
}

// ------------------------------------------------------------------ messages

function showMessage(text) {
  const box = $('message');
  box.textContent = text;
  box.hidden = !text;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'className') node.className = value;
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child != null) node.append(child);
  }
  return node;
}

// ------------------------------------------------------------------ rendering

function formatValue(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'number' || typeof value === 'string') return String(value);
  if (Array.isArray(value)) {
    return value.every((v) => typeof v !== 'object' || v === null)
      ? `[${value.map(formatValue).join(', ')}]`
      : value.map(formatValue).join('; ');
  }
  return Object.entries(value).map(([k, v]) => `${k.replaceAll('_', ' ')}: ${formatValue(v)}`)
    .join(', ');
}

function unitOf(name) {
  if (name.endsWith('_deg')) return '°';
  if (name.endsWith('_g')) return 'g';
  if (name.endsWith('_cm3')) return 'cm³';
  return 'mm';
}

function renderHeader(data) {
  $('case-title').textContent = `— case ${data.case_ref ?? data.case_id ?? caseId}`
    + (data.side ? `, ${data.side}` : '') + (data.device ? `, ${data.device}` : '');
  document.title = `Review ${data.case_ref ?? caseId} v${data.version} · orthofit`;

  const select = $('version-select');
  select.replaceChildren();
  const versions = Array.isArray(data.versions) && data.versions.length ? data.versions : [data.version];
  for (const v of versions) {
    const label = `v${v}` + (v === data.approved_version ? ' (approved)' : '');
    const option = el('option', { value: String(v), text: label });
    if (v === data.version) option.selected = true;
    select.append(option);
  }
  select.disabled = versions.length < 2;

  const status = $('status');
  status.textContent = data.status;
  status.className = `badge status-${String(data.status).replace(/[^a-z_-]/gi, '')}`;

  $('approved').textContent = data.approved_version != null
    ? `approved: v${data.approved_version}` : 'not approved yet';
}

$('version-select').addEventListener('change', (event) => {
  const v = event.target.value;
  window.location.assign(`${casePath('/review')}?version=${encodeURIComponent(v)}`);
});

function renderSummary(data) {
  const summary = $('summary');
  summary.replaceChildren();
  summary.append(el('h2', { text: `Version ${data.version}` }));
  const list = el('dl');
  const add = (term, value) => {
    if (value === undefined || value === null || value === '') return;
    list.append(el('dt', { text: term }), el('dd', { text: String(value) }));
  };
  add('Status', data.status);
  if (data.status !== 'ready') {
    add('Reason', data.reason);
    add('Message', data.message);
  }
  if (typeof data.passed === 'boolean') add('Checks', data.passed ? 'all passed ✓' : 'not all passed ✗');
  add('Approved version', data.approved_version != null ? `v${data.approved_version}` : 'none');
  summary.append(list);
  if (typeof data.passed === 'boolean') summary.classList.toggle('failed', !data.passed);
}

// What the design warns of (a side hard to tell, an estimated fibular head...), at the top.
function renderWarnings(warnings) {
  const list = $('warnings');
  list.replaceChildren(...(warnings || []).map((w) => el('li', { text: w })));
  $('warnings-panel').hidden = !(warnings && warnings.length);
}

function renderChecks(checks) {
  const body = $('checks').querySelector('tbody');
  body.replaceChildren();
  for (const [name, check] of Object.entries(checks || {})) {
    const passed = check && check.passed;
    body.append(el('tr', { className: passed ? 'pass' : 'fail' },
      el('td', { text: name.replaceAll('_', ' ') }),
      el('td', { text: formatValue(check ? check.value : null) }),
      el('td', { text: formatValue(check ? check.limit : null) }),
      el('td', { className: 'mark', text: passed ? '✓' : '✗', title: passed ? 'passed' : 'failed' })));
  }
  $('checks-panel').hidden = !checks;
}

// Stiffness per plane (N·m/deg) with the method beside it: rigs differ by tens of percent.
function renderStiffness(stiffness) {
  const body = $('stiffness').querySelector('tbody');
  body.replaceChildren();
  const note = $('stiffness-note');
  $('stiffness-panel').hidden = !stiffness;
  if (!stiffness) return;
  if (!stiffness.reported) {
    note.textContent = `Not reported: ${stiffness.reason}`;
    return;
  }
  for (const plane of ['sagittal', 'frontal', 'transverse']) {
    const k = stiffness.planes[plane];
    if (!k) continue;
    body.append(el('tr', { 'data-plane': plane },
      el('td', { text: plane }),
      el('td', { className: 'num', text: String(k.k_free) }),
      el('td', { className: 'num', text: String(k.k_axis) })));
  }
  const parts = [`${stiffness.unit}. k_free: ${stiffness.method.load_cases.k_free}.`,
    `k_axis: ${stiffness.method.load_cases.k_axis}.`,
    `Clamped: ${stiffness.method.boundary_conditions.clamped}.`,
    `Material: ${stiffness.material.name}, E = ${stiffness.material.elastic_modulus_mpa} MPa.`];
  if (stiffness.target) {
    parts.unshift(`Designed to ${stiffness.target.target_nm_per_deg} ${stiffness.unit} ` +
      `(sagittal k_axis): achieved ${stiffness.target.achieved_nm_per_deg} ` +
      `(${stiffness.target.error_percent} %).`);
  }
  parts.push(stiffness.accuracy + '.');
  note.textContent = parts.join(' ');
}

function renderMeasurements(measurements) {
  const body = $('measurements').querySelector('tbody');
  body.replaceChildren();
  for (const [name, value] of Object.entries(measurements || {})) {
    body.append(el('tr', {},
      el('td', { text: name.replace(/_(mm|deg|g|cm3)$/, '').replaceAll('_', ' ') }),
      el('td', { className: 'num', text: value === null || value === undefined ? '—' : String(value) }),
      el('td', { text: unitOf(name) })));
  }
  $('measurements-panel').hidden = !measurements;
}

function renderColourBar(range, colours) {
  const bar = $('colour-bar');
  if (!Array.isArray(colours) || colours.length < 2) {
    bar.hidden = true;
    return;
  }
  const lo = Array.isArray(range) ? Number(range[0]) : Number(colours[0][0]);
  const hi = Array.isArray(range) ? Number(range[1]) : Number(colours[colours.length - 1][0]);
  const span = hi > lo ? hi - lo : 1;
  const at = (mm) => Math.min(100, Math.max(0, ((Number(mm) - lo) / span) * 100));
  const stops = colours.map(([mm, colour]) => `${colour} ${at(mm).toFixed(2)}%`).join(', ');
  $('colour-gradient').style.background = `linear-gradient(to right, ${stops})`;
  const labels = $('colour-labels');
  labels.replaceChildren();
  colours.forEach(([mm], i) => {
    let text = `${Number(mm)}`;
    if (i === 0) text = `≤ ${text}`;
    if (i === colours.length - 1) text = `≥ ${text}`;
    const label = el('span', { text });
    label.style.left = `${at(mm)}%`;
    labels.append(label);
  });
  bar.hidden = false;
}

function renderActions(data) {
  const ready = data.status === 'ready';
  $('approve-open').disabled = !ready;
  $('approve-open').title = ready ? '' : `version ${data.version} is ${data.status}`;
  $('approve-version').textContent = String(data.version);
  $('approve-warning').hidden = data.passed !== false;
  $('changes-open').disabled = !data.prescription;
}

// ------------------------------------------------------------------ 3D view

function makeViewer(container) {
  const renderer = new THREE.WebGLRenderer({ antialias: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setSize(container.clientWidth || 1, container.clientHeight || 1);
  container.append(renderer.domElement);

  const scene = new THREE.Scene();
  scene.background = new THREE.Color(BACKGROUND);
  const camera = new THREE.PerspectiveCamera(35, (container.clientWidth || 1) / (container.clientHeight || 1), 0.001, 10);
  scene.add(camera);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x8a8f99, 1.6));
  // A light over the viewer's shoulder, turning with the camera.
  const key = new THREE.DirectionalLight(0xffffff, 1.8);
  key.position.set(0.4, 0.8, 1.0);
  camera.add(key);

  const controls = new OrbitControls(camera, renderer.domElement);
  controls.enableRotate = true;
  controls.enableZoom = true;
  controls.enablePan = true;
  controls.screenSpacePanning = true;

  const view = { renderer, scene, camera, controls, model: null, home: null };
  const render = () => renderer.render(scene, camera);
  view.render = render;
  controls.addEventListener('change', render);

  const resize = () => {
    const w = container.clientWidth;
    const h = container.clientHeight;
    if (!w || !h) return;
    renderer.setSize(w, h);
    camera.aspect = w / h;
    camera.updateProjectionMatrix();
    render();
  };
  new ResizeObserver(resize).observe(container);
  return view;
}

function frame(view) {
  const box = new THREE.Box3().setFromObject(view.model);
  if (box.isEmpty()) return;
  const sphere = box.getBoundingSphere(new THREE.Sphere());
  const fov = THREE.MathUtils.degToRad(view.camera.fov);
  const fit = Math.min(fov, 2 * Math.atan(Math.tan(fov / 2) * view.camera.aspect));
  const distance = (sphere.radius / Math.sin(fit / 2)) * 1.08;
  view.camera.near = distance / 100;
  view.camera.far = distance * 10;
  view.camera.position.copy(sphere.center).addScaledVector(VIEW_DIRECTION, distance);
  view.camera.up.set(0, 1, 0);
  view.camera.updateProjectionMatrix();
  view.controls.target.copy(sphere.center);
  view.controls.minDistance = sphere.radius * 0.2;
  view.controls.maxDistance = distance * 4;
  view.controls.update();
  view.render();
}

function styleModel(model) {
  const limb = model.getObjectByName('limb');
  const device = model.getObjectByName('device');
  if (limb) {
    limb.renderOrder = 1;
    limb.traverse((o) => {
      if (!o.isMesh) return;
      o.material = new THREE.MeshStandardMaterial({
        color: LIMB_COLOUR, roughness: 0.9, metalness: 0,
        transparent: true, opacity: LIMB_OPACITY, depthWrite: false,
      });
    });
  }
  if (device) {
    device.traverse((o) => {
      if (!o.isMesh) return;
      o.material = new THREE.MeshStandardMaterial({
        color: 0xffffff, vertexColors: Boolean(o.geometry.getAttribute('color')),
        roughness: 0.6, metalness: 0, side: THREE.DoubleSide,
      });
    });
  }
  return { limb, device };
}

function bindToggle(id, object) {
  const box = $(id);
  box.disabled = !object;
  if (!object) return;
  object.visible = box.checked;
  box.onchange = () => {
    object.visible = box.checked;
    if (viewer) viewer.render();
  };
}

async function showModel(url) {
  const container = $('viewer');
  container.classList.add('loading');
  container.dataset.state = 'loading';
  let buffer;
  try {
    buffer = await api(url, { as: 'buffer' });
  } catch (err) {
    container.classList.remove('loading');
    container.dataset.state = 'error';
    handleError(err, load);
    return;
  }
  try {
    const gltf = await new GLTFLoader().parseAsync(buffer, '');
    if (!viewer) viewer = makeViewer(container);
    if (viewer.model) viewer.scene.remove(viewer.model);
    viewer.model = gltf.scene;
    viewer.scene.add(gltf.scene);
    const { limb, device } = styleModel(gltf.scene);
    bindToggle('show-limb', limb);
    bindToggle('show-device', device);
    frame(viewer);
    container.dataset.state = 'shown';
  } catch (err) {
    container.dataset.state = 'error';
    showMessage(`The 3D model could not be shown: ${err && err.message ? err.message : err}`);
  } finally {
    container.classList.remove('loading');
  }
}

$('reset-view').addEventListener('click', () => {
  if (viewer && viewer.model) frame(viewer);
});

// ------------------------------------------------------------------ actions

function showResult(text, ok) {
  const out = $('action-result');
  out.replaceChildren();
  if (typeof text === 'string') out.textContent = text;
  else out.append(text);
  out.className = ok ? 'ok' : 'error';
  out.hidden = false;
}

function toggleForm(id) {
  for (const other of ['approve-form', 'changes-form']) {
    $(other).hidden = other === id ? !$(other).hidden : true;
  }
  $('action-result').hidden = true;
}

document.querySelectorAll('[data-close]').forEach((button) => {
  button.addEventListener('click', () => {
    $(button.dataset.close).hidden = true;
  });
});

$('approve-open').addEventListener('click', () => {
  toggleForm('approve-form');
  if (!$('approve-form').hidden) $('lab-input').focus();
});

$('changes-open').addEventListener('click', () => {
  if (review) $('prescription-input').value = JSON.stringify(review.prescription ?? {}, null, 2);
  toggleForm('changes-form');
  if (!$('changes-form').hidden) $('prescription-input').focus();
});

async function approve() {
  const lab = $('lab-input').value.trim();
  if (!lab || !review) return;
  const button = $('approve-form').querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const result = await api(casePath('/approve'), {
      method: 'POST', json: { version: review.version, lab },
    });
    const approvedVersion = result && result.approved_version != null
      ? result.approved_version : review.version;
    review.approved_version = approvedVersion;
    renderHeader(review);
    renderSummary(review);
    $('approve-form').hidden = true;
    showResult(`Version ${approvedVersion} approved for ${lab}.`, true);
  } catch (err) {
    handleError(err, approve, (text) => showResult(`Not approved: ${text}`, false));
  } finally {
    button.disabled = false;
  }
}

async function requestChanges() {
  const text = $('prescription-input').value;
  try {
    JSON.parse(text);
  } catch (err) {
    showResult(`The prescription is not valid JSON: ${err.message}`, false);
    return;
  }
  const button = $('changes-form').querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const form = new FormData();
    form.append('prescription', text);
    const result = await api(casePath('/versions'), { method: 'POST', form });
    $('changes-form').hidden = true;
    const link = el('a', {
      href: `${casePath('/review')}?version=${encodeURIComponent(result.version)}`,
      text: `open version ${result.version}`,
    });
    const status = result.status ? ` (${result.status})` : '';
    showResult(el('span', {}, `New version ${result.version} submitted${status}: `, link), true);
  } catch (err) {
    handleError(err, requestChanges, (msg) => showResult(`Not submitted: ${msg}`, false));
  } finally {
    button.disabled = false;
  }
}

$('approve-form').addEventListener('submit', (event) => {
  event.preventDefault();
  approve();
});

$('changes-form').addEventListener('submit', (event) => {
  event.preventDefault();
  requestChanges();
});

// ------------------------------------------------------------------ load

async function load() {
  showMessage('');
  if (!caseId || caseId.includes('{{')) {
    showMessage('No case given: open this page as /cases/{id}/review.');
    return;
  }
  const query = requestedVersion ? `?version=${encodeURIComponent(requestedVersion)}` : '';
  let data;
  try {
    data = await api(`${casePath('/review.json')}${query}`);
  } catch (err) {
    $('status').textContent = 'not loaded';
    handleError(err, load);
    return;
  }
  review = data;
  $('content').hidden = false;
  renderHeader(data);
  renderSummary(data);
  renderWarnings(data.warnings);
  renderActions(data);
  const ready = data.status === 'ready';
  $('viewer-panel').hidden = !ready;
  if (!ready) {
    renderChecks(data.checks);
    renderMeasurements(data.measurements);
    const parts = [`Version ${data.version} is ${data.status}.`];
    if (data.reason) parts.push(`Reason: ${data.reason}.`);
    if (data.message) parts.push(String(data.message));
    showMessage(parts.join(' '));
    return;
  }
  renderChecks(data.checks);
  renderMeasurements(data.measurements);
  renderStiffness(data.stiffness);
  renderColourBar(data.clearance_colour_mm, data.colours);
  if (data.glb) await showModel(data.glb);
}

if (apiKey()) load();
else askForKey('', load);
