#!/usr/bin/env node
/**
 * A `solc` command-line stand-in over solc-js (npm `solc`), for Foundry's `forge --use <this file>`.
 *
 * Forge drives a native solc through two invocations, and this shim answers both offline:
 *
 *   solc_shim.mjs --version                  prints "Version: <solc-js version>" (e.g. 0.8.37+commit...)
 *   solc_shim.mjs --standard-json [flags..]  reads a standard-JSON input on stdin, writes the output
 *
 * Other flags forge passes with --standard-json (--allow-paths, --base-path, --include-path, ...)
 * are accepted; imports that forge did not inline are resolved from the base path (or the current
 * directory), restricted to files inside it. Any other usage exits with status 2 and a message.
 */

import * as fs from 'node:fs'
import * as path from 'node:path'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

/** Value of `--name value` or `--name=value` in argv, or undefined. */
function flagValue (args, name) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name && i + 1 < args.length) return args[i + 1]
    if (args[i].startsWith(name + '=')) return args[i].slice(name.length + 1)
  }
  return undefined
}

/** An import callback reading files under `base` (never outside it). */
function importReader (base) {
  const root = path.resolve(base)
  return (p) => {
    const full = path.resolve(root, p)
    if (full !== root && !full.startsWith(root + path.sep)) {
      return { error: `import "${p}" lies outside ${root}` }
    }
    try {
      return { contents: fs.readFileSync(full, 'utf8') }
    } catch (err) {
      return { error: `import "${p}" cannot be read: ${err.message}` }
    }
  }
}

function main (args) {
  let solc
  try {
    solc = require('solc')
  } catch (err) {
    process.stderr.write(`solc_shim: cannot load solc-js (${err.message}); run \`npm ci\` (or \`make install\`)\n`)
    return 2
  }
  if (args.includes('--version')) {
    process.stdout.write(`solc, the solidity compiler commandline interface (solc-js shim)\nVersion: ${solc.version()}\n`)
    return 0
  }
  if (!args.includes('--standard-json')) {
    process.stderr.write('solc_shim: usage: solc_shim.mjs --version | --standard-json [flags] < input.json\n')
    return 2
  }
  const input = fs.readFileSync(0, 'utf8')
  try {
    JSON.parse(input)
  } catch (err) {
    process.stderr.write(`solc_shim: standard-JSON input on stdin is not JSON: ${err.message}\n`)
    return 2
  }
  const base = flagValue(args, '--base-path') || process.cwd()
  process.stdout.write(solc.compile(input, { import: importReader(base) }))
  return 0
}

process.exitCode = main(process.argv.slice(2))
