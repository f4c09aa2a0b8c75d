#!/bin/sh
# The fleet scenario's vault secret (ANSIBLE_VAULT_PASSWORD_FILE, molecule.yml):
# made once per run in molecule's own directory, never in the repository. The
# DKIM key store (group_vars/all/fleet.yml) is encrypted with it.
set -eu
secret="${MOLECULE_EPHEMERAL_DIRECTORY:?run by molecule}/vault-password"
if [ ! -s "$secret" ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 >"$secret.new" && mv "$secret.new" "$secret")
fi
cat "$secret"
