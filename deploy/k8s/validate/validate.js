// Validates every object of rendered Kubernetes manifests (YAML on stdin or in the files named)
// against the Kubernetes API schemas, offline, with the kubernetes-models package. Prints one line
// per object and exits 1 if any is invalid or of a kind it does not know.
"use strict";
const fs = require("fs");
const yaml = require("js-yaml");

function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const path = group === "" ? `kubernetes-models/${version}/${kind}`
                            : `kubernetes-models/${group}/${version}/${kind}`;
  try {
    return require(path)[kind];
  } catch (e) {
    return null;
  }
}

const inputs = process.argv.length > 2 ? process.argv.slice(2).map((f) => fs.readFileSync(f, "utf8"))
                                       : [fs.readFileSync(0, "utf8")];
let failures = 0;
let count = 0;
for (const text of inputs) {
  for (const object of yaml.loadAll(text)) {
    if (!object) continue;
    count += 1;
    const name = `${object.kind}/${object.metadata && object.metadata.name}`;
    const Model = modelFor(object.apiVersion, object.kind);
    if (!Model) {
      console.log(`UNKNOWN ${object.apiVersion} ${name}`);
      failures += 1;
      continue;
    }
    if (object.kind === "Secret" && object.data) {
      // kustomize wraps base64 at 76 columns; the API server's decoder skips line breaks, the
      // schema's "byte" format does not.
      for (const key of Object.keys(object.data)) object.data[key] = object.data[key].replace(/\s+/g, "");
    }
    try {
      new Model(object).validate();
      console.log(`ok ${object.apiVersion} ${name}`);
    } catch (e) {
      console.log(`INVALID ${object.apiVersion} ${name}: ${e.message}`);
      failures += 1;
    }
  }
}
console.log(`${count - failures} of ${count} objects valid`);
process.exit(failures === 0 && count > 0 ? 0 : 1);
