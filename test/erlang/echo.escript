#!/usr/bin/env escript
%% Connects to 127.0.0.1:Port with {packet, 4} and answers every term it is sent with four frames: the term as
%% term_to_binary writes it by default, with {minor_version, 2} (UTF-8 atoms), compressed, and, last, how Erlang
%% prints it (~w, as a UTF-8 binary). Ends when the other side closes. Written for lib-chan's tests.
main([PortText]) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, list_to_integer(PortText),
                              [binary, {packet, 4}, {active, false}, {nodelay, true}]),
    loop(S).

loop(S) ->
    case gen_tcp:recv(S, 0) of
        {ok, Bin} ->
            T = binary_to_term(Bin),
            ok = gen_tcp:send(S, term_to_binary(T)),
            ok = gen_tcp:send(S, term_to_binary(T, [{minor_version, 2}])),
            ok = gen_tcp:send(S, term_to_binary(T, [compressed])),
            ok = gen_tcp:send(S, term_to_binary(unicode:characters_to_binary(io_lib:format("~w", [T])))),
            loop(S);
        {error, closed} ->
            halt(0)
    end.
