// tutorial/code/steps/05-body-main.cpp: the main that ends the reader's server.cpp in chapter 5.
//
// Not a program by itself: chapter 4's main, with serve_request doing the whole exchange. It
// is main.cpp but for Ctrl-C, flags and the log, which chapter 6 adds. make test builds what
// the chapter has the reader type (tutorial_code --build) and checks it (tests/steps_test.cpp).

// ANCHOR: main
int main(int argc, char** argv) {
  int exit_status = 1;
  Socket listener = listen_from_args(argc, argv, exit_status);
  if (!listener) return exit_status;
  ::signal(SIGPIPE, SIG_IGN);  // a client that closes early must cost a failed send(), not the process

  const int no_stop = -1;
  const Limits limits{kDefaultMaxBody, std::chrono::milliseconds(kDefaultTimeoutMs)};
  BodyBudget budget(limits.max_body);  // one request at a time: one body's worth
  while (Socket connection = accept_connection(listener, no_stop, limits.timeout)) {
    std::array<char, kBufferSize> input, output;
    Body body(budget);
    Reader reader(connection, input, no_stop);
    Writer writer(connection, output);
    Exchange exchange = serve_request(reader, writer, body, handle, limits, /*may_keep_alive=*/false);
    if (exchange.answered) linger_before_close(connection, reader);
  }
  return 1;
}
// ANCHOR_END: main
