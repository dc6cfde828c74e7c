#!/usr/bin/python3
"""Offline checks of deploy/: no container engine and no cluster.

1. yamllint passes on every YAML file under deploy/.
2. Both kustomize overlays render (with development secrets generated into a scratch copy), and
   every rendered object validates against the Kubernetes API schemas (kubernetes-models, pinned
   in deploy/k8s/validate); a deliberately broken object is refused, so the check can fail.
3. Every fedcl container in the rendered manifests and the compose file is checked against the
   binaries: each $(VAR) / ${VAR} is defined, each --flag is one the binary's --help lists, each
   path under /etc/fedcl or /var/lib is inside one of the container's mounts, ports and probes
   agree with fedcl.env, the device replicas and worker completions match the environment and
   the tokens issued, and the server config and scenario pass the binaries' own validation.
4. The runtime image installs every shared library the binaries load (ldd -> dpkg -S).

  manifests_test.py REPO BIN_DIR SCRATCH_DIR
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import yaml


def run(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def load_launcher(repo):
    """deploy/launch.py as a module: the checks read fedcl.env with the launcher's own parser."""
    spec = importlib.util.spec_from_file_location("launch", os.path.join(repo, "deploy", "launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HELP_CACHE = {}


def flags_of(binary_dir, binary):
    if binary not in HELP_CACHE:
        out = run([os.path.join(binary_dir, binary), "--help"])
        HELP_CACHE[binary] = set(re.findall(r"^\s+--([a-z_0-9]+)", out.stdout + out.stderr, re.M))
        check(HELP_CACHE[binary], f"{binary} --help listed no flags")
    return HELP_CACHE[binary]


def check_command(where, argv, env, binary_dir, mounts, expand):
    """argv: the container's command + args, unexpanded."""
    binary = os.path.basename(argv[0])
    if not binary.startswith("fedcl-"):
        return 0
    known = flags_of(binary_dir, binary)
    checked = 0
    for arg in argv[1:]:
        for name in expand.findall(arg):
            check(name in env, f"{where}: {arg} uses {name}, which is not defined")
        value = expand.sub(lambda m: env.get(m.group(1), ""), arg)
        check(value.startswith("--"), f"{where}: argument '{arg}' is not a --flag")
        flag, _, flag_value = value[2:].partition("=")
        check(flag in known, f"{where}: {binary} has no flag --{flag} (it lists {sorted(known)})")
        if flag_value.startswith(("/etc/fedcl", "/var/lib")) and mounts is not None:
            check(any(flag_value == m or flag_value.startswith(m.rstrip("/") + "/") for m in mounts),
                  f"{where}: --{flag}={flag_value} is outside every mount ({mounts})")
        checked += 1
    return checked


def container_env(c, configmaps, extra):
    env = {}
    for source in c.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(configmaps[name])
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", "0")  # downward-API values: an index, "0" will do
    env.update(extra)
    return env


def main(repo, bin_dir, scratch):
    deploy = os.path.join(repo, "deploy")
    env_file = load_launcher(repo).read_env_file(os.path.join(deploy, "k8s", "base", "fedcl.env"))

    # 1. Lint.
    lint = run(["yamllint", "-s", "-c", os.path.join(deploy, ".yamllint"), deploy])
    check(lint.returncode == 0, "yamllint:\n" + lint.stdout + lint.stderr)

    # 2. Render both overlays from a scratch copy holding development secrets, and validate.
    shutil.rmtree(scratch, ignore_errors=True)
    k8s = os.path.join(scratch, "k8s")
    shutil.copytree(os.path.join(deploy, "k8s"), k8s,
                    ignore=shutil.ignore_patterns("secrets", "node_modules"))
    shutil.copy(os.path.join(deploy, "dev_ca.sh"), scratch)
    shutil.copy(os.path.join(deploy, "make_tokens.sh"), scratch)
    made = run([os.path.join(k8s, "make_dev_secrets.sh")])
    check(made.returncode == 0, "make_dev_secrets.sh:\n" + made.stderr)
    validator_modules = os.path.join(repo, "third_party", "k8s-validate", "node_modules")
    node_env = dict(os.environ, NODE_PATH=validator_modules)
    rendered = {}
    for overlay in ("dev", "simulation"):
        out = run(["kubectl", "kustomize", os.path.join(k8s, "overlays", overlay)])
        check(out.returncode == 0, f"kubectl kustomize {overlay}:\n{out.stderr}")
        rendered[overlay] = [d for d in yaml.safe_load_all(out.stdout) if d]
        valid = run(["node", os.path.join(deploy, "k8s", "validate", "validate.js")],
                    input=out.stdout, env=node_env)
        check(valid.returncode == 0, f"schema check of {overlay}:\n{valid.stdout}{valid.stderr}")
        print(f"{overlay}: {valid.stdout.strip().splitlines()[-1]}")
    broken = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: high}]}\n"
    refused = run(["node", os.path.join(deploy, "k8s", "validate", "validate.js")], input=broken,
                  env=node_env)
    check(refused.returncode != 0 and "INVALID" in refused.stdout,
          "the schema check accepted a Service with a non-numeric port")

    # 3. Commands against the binaries.
    k8s_var = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
    checked = 0
    for overlay, docs in rendered.items():
        configmaps = {}
        for d in docs:
            if d["kind"] == "ConfigMap":
                base_name = re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"])
                configmaps[d["metadata"]["name"]] = d.get("data", {})
                configmaps[base_name] = d.get("data", {})
        check(configmaps["fedcl-env"] == env_file, f"{overlay}: the env ConfigMap is not fedcl.env")
        secrets = {re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"]): d.get("data", {})
                   for d in docs if d["kind"] == "Secret"}
        for d in docs:
            if d["kind"] not in ("StatefulSet", "Job"):
                continue
            spec = d["spec"]["template"]["spec"]
            extra = {"JOB_COMPLETION_INDEX": "0"} if d["kind"] == "Job" else {}
            for c in spec.get("initContainers", []) + spec["containers"]:
                where = f"{overlay} {d['kind']}/{d['metadata']['name']} {c['name']}"
                env = container_env(c, configmaps, extra)
                mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
                argv = c.get("command", []) + c.get("args", [])
                if argv[:2] == ["/bin/sh", "-c"]:
                    for name in re.findall(r"\$([A-Z_][A-Z0-9_]*)", " ".join(argv[2:])):
                        check(name in env, f"{where}: the shell uses ${name}, not in its env")
                    for binary, flags in re.findall(r"(fedcl-[a-z]+)((?:\s+--[a-z_]+=\S+)+)",
                                                    " ".join(argv[2:])):
                        for flag in re.findall(r"--([a-z_]+)=", flags):
                            check(flag in flags_of(bin_dir, binary),
                                  f"{where}: {binary} has no flag --{flag}")
                            checked += 1
                    continue
                checked += check_command(where, argv, env, bin_dir, mounts, k8s_var)
                for port in c.get("ports", []):
                    check(str(port["containerPort"]) in (env["FEDCL_SERVER_PORT"],
                                                         env["FEDCL_HEALTH_PORT"]),
                          f"{where}: port {port['containerPort']} is neither FEDCL_SERVER_PORT "
                          "nor FEDCL_HEALTH_PORT")
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe in c:
                        check(str(c[probe]["grpc"]["port"]) == env["FEDCL_HEALTH_PORT"],
                              f"{where}: {probe} is not on FEDCL_HEALTH_PORT")
                        check(any(a == "--health_listen=0.0.0.0:$(FEDCL_HEALTH_PORT)"
                                  for a in c["args"]),
                              f"{where}: probes need --health_listen on FEDCL_HEALTH_PORT")
            if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "fedcl-device" and \
                    d["spec"]["replicas"] > 0:
                replicas = d["spec"]["replicas"]
                check(str(replicas) == env_file["FEDCL_NUM_DEVICES"],
                      f"{overlay}: {replicas} device replicas but FEDCL_NUM_DEVICES="
                      f"{env_file['FEDCL_NUM_DEVICES']}")
                tokens = secrets["fedcl-device-tokens"]
                check(all(f"client-{i}.token" in tokens for i in range(replicas)),
                      f"{overlay}: not every device replica has a token ({sorted(tokens)})")
            if d["kind"] == "Job":
                shards = int(env_file["FEDCL_SIM_SHARDS"])
                check(d["spec"]["completions"] == shards and d["spec"]["parallelism"] == shards,
                      f"{overlay}: the worker Job must run FEDCL_SIM_SHARDS={shards} pods")
                check(d["spec"]["completionMode"] == "Indexed", "the worker Job must be Indexed")
                tokens = secrets["fedcl-worker-tokens"]
                check(all(f"shard-{i}.token" in tokens for i in range(shards)),
                      f"{overlay}: not every shard has a token ({sorted(tokens)})")
        services = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] ==
                    "fedcl-server"]
        check(services and services[0]["spec"]["ports"][0]["port"] ==
              int(env_file["FEDCL_SERVER_PORT"]) and
              env_file["FEDCL_SERVER_ADDRESS"] == f"fedcl-server:{env_file['FEDCL_SERVER_PORT']}",
              f"{overlay}: the Service, FEDCL_SERVER_ADDRESS and FEDCL_SERVER_PORT disagree")
        policy = [d for d in docs if d["kind"] == "NetworkPolicy"][0]
        roles = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]
        for d in docs:
            if d["kind"] in ("StatefulSet", "Job") and d["metadata"]["name"] != "fedcl-server":
                role = d["spec"]["template"]["metadata"]["labels"].get("fedcl.io/role")
                check(role in roles["values"], f"{overlay}: {d['metadata']['name']} (role "
                      f"{role}) would be shut out of the server by the NetworkPolicy")

    # The config files, by the binaries' own validation, with the paths the manifests give.
    config_dir = os.path.join(deploy, "k8s", "base")
    server_check = run([os.path.join(bin_dir, "fedcl-server"), "--check_config",
                        f"--config={config_dir}/server.textproto", "--state_dir=/var/lib/fedcl",
                        "--backbone=/var/lib/fedcl/backbone.ckpt",
                        "--tokens_file=/etc/fedcl/tokens/tokens.txt",
                        "--tls_cert=/etc/fedcl/tls/server.pem", "--tls_key=/etc/fedcl/tls/server.key"])
    check(server_check.returncode == 0, "server.textproto:\n" + server_check.stderr)
    sim_check = run([os.path.join(bin_dir, "fedcl-sim"), f"--scenario={config_dir}/sim.textproto",
                     "--validate_only"])
    check(sim_check.returncode == 0, "sim.textproto:\n" + sim_check.stderr)
    clients = int(re.search(r"num_clients:\s*(\d+)", open(f"{config_dir}/sim.textproto").read())[1])
    default_sim_clients = re.search(r"sim_clients=\$\{3:-(\d+)\}",
                                    open(os.path.join(deploy, "k8s", "make_dev_secrets.sh")).read())[1]
    check(clients == int(default_sim_clients),
          f"sim.textproto has {clients} clients, make_dev_secrets.sh issues shard tokens for "
          f"{default_sim_clients}")

    # The compose file: ${VAR} from fedcl.env, flags against the binaries, secrets it mounts.
    compose = yaml.safe_load(open(os.path.join(deploy, "compose.yaml")))
    compose_var = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
    dev_secrets = set(os.listdir(os.path.join(k8s, "overlays", "dev", "secrets")))
    for name, service in compose["services"].items():
        argv = service.get("command", [])
        mounts = []
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            mounts.append(target)
            if source.startswith("./k8s/overlays/dev/secrets/"):
                check(os.path.basename(source) in dev_secrets,
                      f"compose {name}: mounts {source}, which make_dev_secrets.sh does not make")
        if argv and argv[0].startswith("fedcl-"):
            checked += check_command(f"compose {name}", argv, env_file, bin_dir, mounts,
                                     compose_var)
        if name.startswith("device-"):
            index = name.split("-")[1]
            check(f"--client_id={index}" in argv and f"--partition_index={index}" in argv and
                  f"--token_file=${{FEDCL_TOKENS_DIR}}/client-{index}.token" in argv,
                  f"compose {name}: identity, partition and token must all be {index}")
    print(f"{checked} flags checked against the binaries' --help")

    # 4. The runtime image's packages cover the binaries' shared libraries.
    dockerfile = open(os.path.join(deploy, "Dockerfile")).read()
    runtime = dockerfile[dockerfile.index("AS runtime"):]
    for binary in ("fedcl-server", "fedcl-client", "fedcl-sim", "fedcl-pretrain"):
        for line in run(["ldd", os.path.join(bin_dir, binary)]).stdout.splitlines():
            if "=>" not in line or "linux-vdso" in line:
                continue
            path = os.path.realpath(line.split("=>")[1].split("(")[0].strip())
            owner = ""
            # Merged /usr: dpkg may know the file under /lib or under /usr/lib.
            for candidate in (path, re.sub(r"^/lib/", "/usr/lib/", path),
                              re.sub(r"^/usr/lib/", "/lib/", path)):
                owner = run(["dpkg", "-S", candidate]).stdout.split(":")[0]
                if owner:
                    break
            check(owner, f"{binary} loads {path}, which no Debian package provides")
            if owner in ("libc6", "libgcc-s1", "libstdc++6"):
                continue  # in every Debian image
            check(owner in runtime, f"the runtime image lacks {owner} ({path}, for {binary})")
    print("manifests, compose file and Dockerfile pass the offline checks")


if __name__ == "__main__":
    main(*sys.argv[1:])
