# PostgreSQL from Debian's packages, for where postgres:16 cannot be pulled: docker/offline-images
# makes ROOTFS by debootstrap and builds this on it. The entry point keeps the official image's
# contract (docker/postgres-entrypoint).
ARG ROOTFS=gapsweep-base/postgres-rootfs:15-bookworm
FROM ${ROOTFS}
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY postgres-entrypoint /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
