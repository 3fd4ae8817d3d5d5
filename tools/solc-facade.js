#!/usr/bin/env node
// A native-solc stand-in for py-solc-x and Brownie: answers `--version` and
// compiles `--standard-json` from stdin through solc-js (no native compiler can
// be downloaded on these machines). Imports that are not in the input JSON are
// read from disk, relative to the working directory or any --allow-paths entry.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require(path.join(__dirname, "..", "node_modules", "solc"));

const args = process.argv.slice(2);
if (args.includes("--version")) {
  process.stdout.write(
    `solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`
  );
  process.exit(0);
}
if (!args.includes("--standard-json")) {
  process.stderr.write("solc facade: only --version and --standard-json are supported\n");
  process.exit(2);
}
const roots = [process.cwd()];
const allowIndex = args.indexOf("--allow-paths");
if (allowIndex >= 0 && args[allowIndex + 1]) {
  roots.push(...args[allowIndex + 1].split(","));
}
function findImports(importPath) {
  const candidates = path.isAbsolute(importPath)
    ? [importPath]
    : roots.map((root) => path.join(root, importPath));
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) {
      return { contents: fs.readFileSync(candidate, "utf8") };
    }
  }
  return { error: `File not found: ${importPath}` };
}
const input = fs.readFileSync(0, "utf8");
process.stdout.write(solc.compile(input, { import: findImports }));
