#!/usr/bin/env bash
# The services a search scales out to, on this machine and on loopback only, for the
# cluster tests (pytest -m cluster) and for trying the README's scale-out section:
#
#   - PostgreSQL (Debian's): role "cifarlab", password "cifarlab", allowed to create
#     databases; the tests make one empty database each.
#   - a single-node SLURM cluster (Debian's slurm-wlm and munge): slurmctld and slurmd on
#     127.0.0.1, partition "debug" with this machine's CPUs, no GPU, no cgroups.
#
# Run as root (it installs the Debian packages when missing and starts the daemons);
# running it again leaves what is up as it is.
#
#   sudo bash tests/cluster/services.sh && pytest -m cluster
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "services.sh: run as root (sudo bash $0): it installs Debian packages and starts daemons" >&2
    exit 1
fi

packages=()
command -v pg_ctlcluster >/dev/null || packages+=(postgresql)
command -v slurmctld >/dev/null || packages+=(slurm-wlm)
command -v munged >/dev/null || packages+=(munge)
if [ ${#packages[@]} -gt 0 ]; then
    echo "services.sh: installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${packages[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${packages[@]}" >/dev/null; }
fi

# PostgreSQL: the distribution's cluster, listening on loopback only.
version=$(pg_lsclusters --no-header | awk 'NR==1 {print $1}')
if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_createcluster "$version" main >/dev/null
fi
conf="/etc/postgresql/$version/main/postgresql.conf"
grep -q "^listen_addresses = '127.0.0.1'" "$conf" || echo "listen_addresses = '127.0.0.1'" >>"$conf"
grep -q "^max_connections = 200" "$conf" || echo "max_connections = 200" >>"$conf"  # many workers, each a few connections
pg_ctlcluster "$version" main status >/dev/null 2>&1 || pg_ctlcluster "$version" main start
for _ in $(seq 30); do runuser -u postgres -- pg_isready -q -h 127.0.0.1 && break; sleep 1; done
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cifarlab') THEN
    CREATE ROLE cifarlab LOGIN CREATEDB PASSWORD 'cifarlab';
  END IF;
END $$;
SQL

# munge: SLURM's authentication between its daemons and commands.
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged

# SLURM: one node, this machine, as many CPUs as it has and 90% of its memory.
node=$(hostname -s)
cpus=$(nproc)
memory_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >/etc/slurm/slurm.conf <<CONF
ClusterName=cifarlab
SlurmctldHost=$node(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 30); do
    state=$(sinfo -h -N -o %t 2>/dev/null | head -1)
    case "$state" in idle | mix | alloc) break ;; esac
    sleep 1
done
case "$state" in
idle | mix | alloc) ;;
*)
    scontrol update nodename="$node" state=resume 2>/dev/null || true
    ;;
esac

echo "services.sh: PostgreSQL $version on 127.0.0.1:5432 (postgresql+psycopg://cifarlab:cifarlab@127.0.0.1:5432/<db>)"
echo "services.sh: SLURM partition debug: node $node, $cpus CPUs, ${memory_mb} MB, state $(sinfo -h -N -o %t | head -1)"
