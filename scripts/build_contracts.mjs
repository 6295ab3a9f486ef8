#!/usr/bin/env node
/**
 * Build the Solidity contracts of the AI EVM with solc-js (npm `solc`).
 *
 * Compiles every `contracts/**\/*.sol` (except `contracts/build/` and the forge tests: `*.t.sol` files
 * and `contracts/dispute/test/`, which `forge test` compiles itself) in one standard-JSON run with
 * evmVersion "prague" and the optimizer on (200 runs), and writes one artifact per deployable
 * contract or library to `contracts/build/<ContractName>.json`:
 *
 *   {abi, bytecode, compiler: {evmVersion, optimizer: {enabled, runs}, version}, contractName,
 *    deployedBytecode, sourceHash, sourceName}
 *
 * Keys are sorted, the file ends with a newline, and the output depends only on the sources and
 * the pinned compiler (metadata hash off), so the artifacts are committed and checked for
 * staleness in CI. Interfaces and abstract contracts get no artifact.
 *
 * Usage:
 *   node scripts/build_contracts.mjs           write/refresh contracts/build/*.json
 *   node scripts/build_contracts.mjs --check   exit 1 naming every stale, missing or extra artifact
 *
 * Exit status: 0 ok, 1 stale artifacts (--check), 2 compile error or bad usage.
 */

import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CONTRACTS_DIR = 'contracts'
const BUILD_DIR = path.join(CONTRACTS_DIR, 'build')
/** Forge test sources (run by `forge test`, never deployed): no artifacts. */
const FORGE_TEST_DIRS = new Set([path.posix.join(CONTRACTS_DIR, 'dispute', 'test')])
const FORGE_TEST_SUFFIX = '.t.sol'
const EVM_VERSION = 'prague'
const OPTIMIZER = Object.freeze({ enabled: true, runs: 200 })
const BUILD_COMMAND = 'node scripts/build_contracts.mjs (or: make contracts)'

/** A usage or compiler failure: printed without a stack trace, exit status 2. */
class BuildError extends Error {}

/** Every .sol file under contracts/ except contracts/build and forge tests, as sorted POSIX paths from the root. */
function findSources () {
  const found = []
  const walk = (rel) => {
    for (const entry of fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const child = path.posix.join(rel, entry.name)
      if (entry.isDirectory()) {
        if (child !== BUILD_DIR && !FORGE_TEST_DIRS.has(child) && !entry.name.startsWith('.')) walk(child)
      } else if (entry.isFile() && entry.name.endsWith('.sol') && !entry.name.endsWith(FORGE_TEST_SUFFIX)) {
        found.push(child)
      }
    }
  }
  walk(CONTRACTS_DIR)
  return found.sort()
}

/** Hex sha256 of a string or buffer. */
function sha256 (data) {
  return createHash('sha256').update(data).digest('hex')
}

/** A deep copy of a JSON value with every object's keys in sorted order. */
function sortKeys (value) {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]))
  }
  return value
}

/** Compile all sources in one standard-JSON run; throws BuildError on any error or warning. */
function compile (solc, sources) {
  const input = {
    language: 'Solidity',
    sources: Object.fromEntries(Object.entries(sources).map(([p, content]) => [p, { content }])),
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: { ...OPTIMIZER },
      metadata: { bytecodeHash: 'none' },
      outputSelection: {
        '*': { '': ['ast'], '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] }
      }
    }
  }
  const findImports = (p) => ({
    error: `import "${p}" is not a file under ${CONTRACTS_DIR}/ (imports must be relative paths to ` +
      'project sources; there are no external Solidity dependencies)'
  })
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }))
  const problems = (output.errors || []).filter((e) => e.severity !== 'info')
  if (problems.length > 0) {
    const text = problems.map((e) => e.formattedMessage || e.message).join('\n')
    const kind = problems.some((e) => e.severity === 'error') ? 'errors' : 'warnings (treated as errors)'
    throw new BuildError(`solc ${solc.version()} reported ${kind}:\n${text}`)
  }
  return output
}

/** Map source path -> sorted list of the source paths it imports, read from the AST. */
function importGraph (output) {
  const graph = {}
  for (const [src, { ast }] of Object.entries(output.sources)) {
    graph[src] = ast.nodes.filter((n) => n.nodeType === 'ImportDirective').map((n) => n.absolutePath).sort()
  }
  return graph
}

/** sha256 over the path and sha256 of each source file the given source depends on (itself included). */
function sourceHash (src, graph, sources) {
  const seen = new Set()
  const stack = [src]
  while (stack.length > 0) {
    const p = stack.pop()
    if (seen.has(p)) continue
    seen.add(p)
    stack.push(...(graph[p] || []))
  }
  const lines = [...seen].sort().map((p) => `${p} ${sha256(sources[p])}\n`)
  return sha256(lines.join(''))
}

/** Render every artifact: a Map of file name -> file text. */
function renderArtifacts (solc, sources, output) {
  const graph = importGraph(output)
  const artifacts = new Map()
  const origin = new Map()
  for (const src of Object.keys(output.sources).sort()) {
    const defs = output.sources[src].ast.nodes.filter((n) => n.nodeType === 'ContractDefinition')
    for (const def of defs) {
      if (def.contractKind === 'interface' || def.abstract) continue
      const name = def.name
      if (origin.has(name)) {
        throw new BuildError(`contract name ${name} is defined in both ${origin.get(name)} and ${src}; ` +
          'artifact names must be unique')
      }
      origin.set(name, src)
      const out = output.contracts[src][name]
      const artifact = {
        contractName: name,
        sourceName: src,
        abi: out.abi,
        bytecode: '0x' + out.evm.bytecode.object,
        deployedBytecode: '0x' + out.evm.deployedBytecode.object,
        compiler: { version: solc.version(), evmVersion: EVM_VERSION, optimizer: { ...OPTIMIZER } },
        sourceHash: '0x' + sourceHash(src, graph, sources)
      }
      artifacts.set(`${name}.json`, JSON.stringify(sortKeys(artifact), null, 2) + '\n')
    }
  }
  return artifacts
}

/** The artifact files now in contracts/build (only *.json; the make stamp is ignored). */
function existingArtifacts () {
  const dir = path.join(ROOT, BUILD_DIR)
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
}

/** Compare rendered artifacts with the files on disk: list of human-readable problems. */
function staleness (artifacts) {
  const problems = []
  for (const [file, text] of [...artifacts.entries()].sort()) {
    const p = path.join(ROOT, BUILD_DIR, file)
    if (!fs.existsSync(p)) problems.push(`missing: ${BUILD_DIR}/${file}`)
    else if (fs.readFileSync(p, 'utf8') !== text) problems.push(`stale: ${BUILD_DIR}/${file}`)
  }
  for (const file of existingArtifacts()) {
    if (!artifacts.has(file)) problems.push(`extra (no such contract): ${BUILD_DIR}/${file}`)
  }
  return problems
}

/** Write changed artifacts atomically (temp file + rename) and remove artifacts of deleted contracts. */
function writeArtifacts (artifacts) {
  const dir = path.join(ROOT, BUILD_DIR)
  fs.mkdirSync(dir, { recursive: true })
  let changed = 0
  for (const [file, text] of artifacts) {
    const p = path.join(dir, file)
    if (fs.existsSync(p) && fs.readFileSync(p, 'utf8') === text) continue
    const tmp = `${p}.tmp-${process.pid}`
    fs.writeFileSync(tmp, text)
    fs.renameSync(tmp, p)
    changed += 1
  }
  let removed = 0
  for (const file of existingArtifacts()) {
    if (!artifacts.has(file)) {
      fs.unlinkSync(path.join(dir, file))
      removed += 1
    }
  }
  return { changed, removed }
}

function main (argv) {
  const args = argv.slice(2)
  const unknown = args.filter((a) => a !== '--check')
  if (unknown.length > 0) throw new BuildError(`unknown argument(s): ${unknown.join(' ')}; usage: build_contracts.mjs [--check]`)
  const check = args.includes('--check')
  let solc
  try {
    solc = require('solc')
  } catch (err) {
    throw new BuildError(`cannot load solc-js (${err.message}); run \`npm ci\` (or \`make install\`) first`)
  }
  const files = findSources()
  const sources = Object.fromEntries(files.map((p) => [p, fs.readFileSync(path.join(ROOT, p), 'utf8')]))
  const artifacts = files.length === 0 ? new Map() : renderArtifacts(solc, sources, compile(solc, sources))
  if (check) {
    const problems = staleness(artifacts)
    if (problems.length > 0) {
      console.error(`contract artifacts are out of date (${problems.length}):\n  ${problems.join('\n  ')}\n` +
        `regenerate them with: ${BUILD_COMMAND}`)
      return 1
    }
    console.log(`${artifacts.size} contract artifacts up to date (solc ${solc.version()})`)
    return 0
  }
  const { changed, removed } = writeArtifacts(artifacts)
  console.log(`${artifacts.size} contract artifacts in ${BUILD_DIR}/ (${changed} written, ${removed} removed; ` +
    `solc ${solc.version()})`)
  return 0
}

try {
  process.exitCode = main(process.argv)
} catch (err) {
  if (!(err instanceof BuildError)) throw err
  console.error(`build_contracts: ${err.message}`)
  process.exitCode = 2
}
