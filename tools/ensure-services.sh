#!/usr/bin/env bash
# Make sure RabbitMQ, MariaDB and PostgreSQL answer on 127.0.0.1; start them if installed
# but stopped; fail clearly if they are not installed.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    local port=$1 name=$2
    for _ in $(seq 1 60); do
        port_open "$port" && return 0
        sleep 1
    done
    echo "ERROR: $name did not start listening on 127.0.0.1:$port within 60 s" >&2
    exit 1
}

if ! port_open 5672; then
    if command -v rabbitmq-server >/dev/null 2>&1; then
        echo "Starting RabbitMQ..."
        rabbitmq-server -detached
        rabbitmqctl await_startup >/dev/null 2>&1 || true
        wait_port 5672 RabbitMQ
    else
        echo "ERROR: RabbitMQ is not installed and nothing listens on 127.0.0.1:5672." >&2
        echo "       Install it: apt-get install -y rabbitmq-server" >&2
        exit 1
    fi
fi

if ! port_open 3306; then
    if [ -x /usr/sbin/mariadbd ]; then
        echo "Starting MariaDB..."
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
        wait_port 3306 MariaDB
    else
        echo "ERROR: MariaDB is not installed and nothing listens on 127.0.0.1:3306." >&2
        echo "       Install it: apt-get install -y mariadb-server" >&2
        exit 1
    fi
fi
if ! port_open 5432; then
    if ls /etc/postgresql >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "Starting PostgreSQL..."
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
        wait_port 5432 PostgreSQL
    else
        echo "ERROR: PostgreSQL is not installed and nothing listens on 127.0.0.1:5432." >&2
        echo "       Install it: apt-get install -y postgresql" >&2
        exit 1
    fi
fi
echo "RabbitMQ, MariaDB and PostgreSQL are up."
