# Build: docker build -t mcpwatch .
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mcpwatch /usr/local/bin/mcpwatch
COPY config /etc/mcpwatch
COPY models /usr/share/mcpwatch/models
ENV MCPWATCH_CONFIG=/etc/mcpwatch/default.toml
EXPOSE 8080
ENTRYPOINT ["mcpwatch"]
CMD ["run"]
