// node validate-api.mjs REFERENCE.yml ANSWERS.json [OPENAPI.json]
// Checks pearl2d's answers against Epiphan's Pearl REST API v2.0 OpenAPI description with openapi-response-validator
// (an independent validator, ajv underneath), and, when given, that our own /openapi.json is a valid OpenAPI 3 document
// (@seriousme/openapi-schema-validator). ANSWERS: [{ method, path (the reference's template), status, body }].
// Prints JSON: { validated, errors: [{ method, path, status, errors }], unknown: [paths the reference lacks], document }.
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import responseValidator from 'openapi-response-validator';
const OpenAPIResponseValidator = responseValidator.default ?? responseValidator;
import { Validator } from '@seriousme/openapi-schema-validator';

const [referencePath, answersPath, ownPath] = process.argv.slice(2);
const spec = yaml.load(readFileSync(referencePath, 'utf8'));
// The reference's DeviceIdentity.name pattern escapes a quote (\\'), which a Unicode-mode regular expression (ajv's)
// refuses to compile; \\' and ' mean the same, so the pattern is read with the plain quote.
const identity = spec.components.schemas.DeviceIdentity.properties.name;
identity.pattern = identity.pattern.replaceAll("\\'", "'");
const answers = JSON.parse(readFileSync(answersPath, 'utf8'));
const out = { validated: 0, errors: [], unknown: [] };

const deref = r => (r && r.$ref ? deref(r.$ref.split('/').slice(1).reduce((o, k) => o[k], spec)) : r);

for (const a of answers) {
  const op = spec.paths[a.path] && spec.paths[a.path][a.method.toLowerCase()];
  if (!op) { out.unknown.push(`${a.method} ${a.path}`); continue; }
  const responses = {};
  for (const [code, r] of Object.entries(op.responses)) responses[code] = deref(r);
  if (!responses[String(a.status)] && !responses.default) { out.errors.push({ method: a.method, path: a.path, status: a.status, errors: [`the reference has no ${a.status} answer here`] }); continue; }
  const v = new OpenAPIResponseValidator({ responses, components: spec.components });
  const result = v.validateResponse(a.status, a.body);
  out.validated++;
  if (result) out.errors.push({ method: a.method, path: a.path, status: a.status, errors: result.errors });
}

if (ownPath) {
  const validator = new Validator();
  const r = await validator.validate(JSON.parse(readFileSync(ownPath, 'utf8')));
  out.document = { valid: r.valid, version: validator.version, errors: r.valid ? [] : r.errors };
}
console.log(JSON.stringify(out));
