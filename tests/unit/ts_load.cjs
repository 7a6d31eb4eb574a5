// Loads a dependency-free module of the browser app (client/src/...) as it is, compiled by
// the client's own TypeScript, for the unit tests that check its functions in Node.
const fs = require("fs");
const path = require("path");
const root = path.resolve(__dirname, "..", "..");
const ts = require(path.join(root, "client", "node_modules", "typescript"));

module.exports = function load(relative) {
  const source = fs.readFileSync(path.join(root, "client", "src", relative), "utf8");
  const options = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 };
  const js = ts.transpileModule(source, { compilerOptions: options }).outputText;
  const mod = { exports: {} };
  new Function("module", "exports", js)(mod, mod.exports);
  return mod.exports;
};
