// Lists product source files over a line budget and functions over a length
// budget, and the import graph's role crossings and cycles: the structure
// rules of docs/architecture.md, checked. `node dist/scripts/size-report.js`
// (exit 1 when something is over; --max-file-lines N, --max-function-lines N).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const roles = ['master', 'chunkserver', 'client', 'shared'];

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

interface Finding {
  file: string;
  what: string;
}

function functionsOver(file: string, text: string, maxLines: number): Finding[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const found: Finding[] = [];
  const visit = (n: ts.Node) => {
    if ((ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n) || ts.isArrowFunction(n) || ts.isFunctionExpression(n) || ts.isConstructorDeclaration(n)) && n.body) {
      const start = sf.getLineAndCharacterOfPosition(n.getStart()).line;
      const end = sf.getLineAndCharacterOfPosition(n.getEnd()).line;
      const name = (n as { name?: ts.Node }).name?.getText(sf) ?? '(anonymous)';
      if (end - start + 1 > maxLines) found.push({ file, what: `function ${name} at line ${start + 1}: ${end - start + 1} lines` });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return found;
}

function importsOf(file: string, text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)) out.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  return out;
}

function main(): void {
  const maxFile = arg('--max-file-lines', 500);
  const maxFn = arg('--max-function-lines', 80);
  const files = roles.flatMap((r) => sources(join(root, r)));
  const findings: Finding[] = [];
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    const lines = text.split('\n').length;
    const rel = relative(root, f);
    if (lines > maxFile) findings.push({ file: rel, what: `${lines} lines` });
    findings.push(...functionsOver(rel, text, maxFn));
    const deps = importsOf(f, text);
    graph.set(f, deps);
    const role = rel.split('/')[0]!;
    for (const d of deps) {
      const dRole = relative(root, d).split('/')[0]!;
      if (role !== 'shared' && dRole !== 'shared' && dRole !== role) findings.push({ file: rel, what: `imports ${relative(root, d)} (a role imports another role)` });
      if (role === 'shared' && dRole !== 'shared') findings.push({ file: rel, what: `imports ${relative(root, d)} (shared/ imports a role)` });
    }
  }
  // Cycles: depth-first search over the import graph.
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (!graph.has(d)) continue;
      if (state.get(d) === 'open') findings.push({ file: relative(root, d), what: `import cycle: ${stack.slice(stack.indexOf(d)).map((x) => relative(root, x)).join(' -> ')} -> ${relative(root, d)}` });
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  const total = files.reduce((n, f) => n + readFileSync(f, 'utf8').split('\n').length, 0);
  process.stdout.write(`${files.length} product files, ${total} lines (${roles.join(', ')}); limits: ${maxFile} lines a file, ${maxFn} a function\n`);
  for (const x of findings) process.stdout.write(`${x.file}: ${x.what}\n`);
  process.stdout.write(findings.length === 0 ? 'nothing over the limits, no role crossings, no cycles\n' : `${findings.length} findings\n`);
  process.exitCode = findings.length === 0 ? 0 : 1;
}

main();
