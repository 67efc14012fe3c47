// tutorial/code/steps/03-tcp-main.cpp: the main that ends the reader's server.cpp in chapter 3.
//
// Not a program by itself. Chapter 3 has the reader type main.cpp's TCP layer into a file of
// their own; this main, first_server.cpp's on top of that layer, turns it into a server. make
// test builds what the chapter has the reader type (tutorial_code --build) and checks it
// (tests/steps_test.cpp).

// ANCHOR: listen_from_args
// first_server's command line, a bare port (0: the kernel picks one), on main.cpp's listen_on.
// Says where it listens; on failure says why and returns no socket, and in `exit_status` 2 for
// a bad argument (1 for anything else).
Socket listen_from_args(int argc, char** argv, int& exit_status) {
  int port = kDefaultPort;
  std::string_view text = argc > 1 ? argv[1] : "";
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (argc > 2 || (argc == 2 && (error != std::errc() || end != text.data() + text.size() || port > 65535))) {
    std::fputs("usage: server [PORT]\n", stderr);
    exit_status = 2;
    return Socket();
  }
  exit_status = 1;
  Socket listener = listen_on("127.0.0.1", port);
  if (listener) std::printf("Listening on %s\n", local_url(listener).c_str());
  std::fflush(stdout);
  return listener;
}
// ANCHOR_END: listen_from_args

// ANCHOR: main
int main(int argc, char** argv) {
  int exit_status = 1;
  Socket listener = listen_from_args(argc, argv, exit_status);
  if (!listener) return exit_status;

  const int no_stop = -1;  // poll() skips a negative descriptor: only Ctrl-C stops this one
  const auto timeout = std::chrono::milliseconds(kDefaultTimeoutMs);
  while (Socket connection = accept_connection(listener, no_stop, timeout)) {
    std::array<char, kBufferSize> input, output;
    Reader reader(connection, input, no_stop);
    // Read until the blank line that ends a request head, the buffer is full, or 5 s are up.
    const Deadline deadline = Clock::now() + timeout;
    while (reader.buffered().find("\r\n\r\n") == std::string_view::npos && reader.fill(deadline) == Fill::Data) {
    }
    Writer writer(connection, output);
    writer.write("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nHello World!");
    if (writer.flush()) linger_before_close(connection, reader);
  }
  return 1;  // accept_connection gives up only when poll() fails
}
// ANCHOR_END: main
