// Validates AsyncAPI documents the way `asyncapi validate` does: @asyncapi/parser with its
// default Spectral ruleset. Prints every diagnostic; exits 1 when any is an error or a warning.
// Usage: node validate.mjs docs/asyncapi.yaml
import { readFile } from 'node:fs/promises';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const SEVERITY = ['error', 'warning', 'info', 'hint'];
const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(await readFile(file, 'utf8'), { source: file });
  for (const d of diagnostics) {
    const where = d.range ? `${d.range.start.line + 1}:${d.range.start.character + 1}` : '-';
    console.log(`${file}:${where} ${SEVERITY[d.severity]} ${d.code} ${d.path.join('.')}: ${d.message}`);
  }
  const bad = diagnostics.filter(
    (d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning,
  );
  if (!document || bad.length) failed = true;
  console.log(`${file}: ${document ? 'parsed' : 'not parsed'}, ${bad.length} errors or warnings`);
}
process.exit(failed ? 1 : 0);
